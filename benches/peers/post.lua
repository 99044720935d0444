-- wrk: POST the 1 KB order to /json.
local f = io.open(os.getenv("ORDER_JSON"), "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
