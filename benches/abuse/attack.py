"""The front door's attacks for benches/abuse.sh, from loopback addresses
other than the bystander's (127.0.0.1) so that the per-address cap hits
the attacker, as it would on the internet.

python3 attack.py MODE COUNT PORT [TLS_PORT]
  leak       COUNT POSTs declaring 1 MB, 10 bytes sent, the answer read,
             then closed (the worker answers 401 without reading)
  idle       COUNT connections that never send a byte, held until killed
  handshake  COUNT TLS connections sending half a ClientHello, held
  trickle    COUNT POSTs sending one body byte a second, held
  reader     COUNT GETs of a 64 MB response, nothing read, held
Prints how many connections it opened (and for leak, answers read)."""

import asyncio
import sys

mode, count, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tls_port = int(sys.argv[4]) if len(sys.argv) > 4 else port
held = []


def source(i):
    # 127.0.1.0/24 .. : a few addresses, each under the per-address cap.
    return (f"127.0.{1 + i // 250}.{1 + i % 250}", 0)


async def conn(i, p=None):
    return await asyncio.open_connection("127.0.0.1", p or port, local_addr=source(i % 5000))


async def leak(i):
    r, w = await conn(i)
    w.write(b"POST /deny HTTP/1.1\r\nhost: attack.test\r\ncontent-length: 1000000\r\n\r\n0123456789")
    await w.drain()
    line = await r.readline()
    w.close()
    return line.startswith(b"HTTP/1.1 401")


async def hold(i, send=b"", p=None, every=None):
    try:
        r, w = await conn(i, p)
    except OSError:
        return False
    held.append(w)
    if send:
        w.write(send)
        await w.drain()
    if every is not None:
        async def drip():
            try:
                while True:
                    await asyncio.sleep(every)
                    w.write(b"x")
                    await w.drain()
            except Exception:
                pass
        asyncio.ensure_future(drip())
    return True


async def main():
    sem = asyncio.Semaphore(200)

    async def one(i):
        async with sem:
            try:
                if mode == "leak":
                    return await leak(i)
                if mode == "idle":
                    return await hold(i)
                if mode == "handshake":
                    return await hold(i, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", tls_port)
                if mode == "trickle":
                    return await hold(i, b"POST / HTTP/1.1\r\nhost: attack.test\r\ncontent-length: 100000\r\n\r\n", every=1.0)
                if mode == "reader":
                    return await hold(i, b"GET /big HTTP/1.1\r\nhost: attack.test\r\n\r\n")
            except Exception:
                return False

    ok = sum(bool(x) for x in await asyncio.gather(*(one(i) for i in range(count))))
    print(ok, flush=True)
    if mode != "leak":
        await asyncio.sleep(3600)


asyncio.run(main())
