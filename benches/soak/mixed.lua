-- wrk script for the soak: every other request claims (through the trusted
-- X-Forwarded-For) an FR client, allowed, or a US client, blocked; each
-- thread counts the statuses it gets, and done() prints them as one line.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    n = 0
    ok, blocked, other = 0, 0, 0
    reqs = {
        wrk.format("GET", "/small", { ["X-Forwarded-For"] = "90.0.0.1" }),
        wrk.format("GET", "/small", { ["X-Forwarded-For"] = "8.8.8.8" }),
    }
end

function request()
    n = n + 1
    return reqs[n % 2 + 1]
end

function response(status, headers, body)
    if status == 200 then
        ok = ok + 1
    elseif status == 451 then
        blocked = blocked + 1
    else
        other = other + 1
    end
end

function done(summary, latency, requests)
    local o, b, x = 0, 0, 0
    for _, t in ipairs(threads) do
        o = o + t:get("ok")
        b = b + t:get("blocked")
        x = x + t:get("other")
    end
    local e = summary.errors
    io.write(string.format(
        "SOAK ok=%d blocked=%d other=%d connect=%d read=%d write=%d timeout=%d status=%d\n",
        o, b, x, e.connect, e.read, e.write, e.timeout, e.status))
end
