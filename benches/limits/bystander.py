import http.client, sys, time
failed = 0
c = http.client.HTTPConnection("127.0.0.1", 9201, timeout=10)
while True:
    try:
        c.request("GET", "/", headers={"host": "bystander.test"})
        r = c.getresponse()
        if r.read() != b"good" or r.status != 200:
            failed += 1
    except Exception:
        failed += 1
        c = http.client.HTTPConnection("127.0.0.1", 9201, timeout=10)
    open(sys.argv[1], "w").write(str(failed))
    time.sleep(0.01)
