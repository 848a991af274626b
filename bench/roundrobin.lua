-- wrk across several server processes: ../shared/bench/post.lua's requests, with wrk's thread i sending
-- to the i-th address of RR_TARGETS (round-robin by thread, so by connection).
--
--   POST_LUA=../shared/bench/post.lua RR_TARGETS=127.0.0.1:8100,127.0.0.1:8101 \
--     wrk -t2 -c64 -d10s --latency -s bench/roundrobin.lua http://127.0.0.1:8100/api/v1/transactions -- KEY RUN
dofile(os.getenv("POST_LUA"))

local targets = {}
for target in string.gmatch(os.getenv("RR_TARGETS") or "", "[^,]+") do
   table.insert(targets, target)
end
local post_setup = setup
local started = 0

function setup(thread)
   post_setup(thread)
   started = started + 1
   local host, port = string.match(targets[(started - 1) % #targets + 1], "^(.+):(%d+)$")
   thread.addr = wrk.lookup(host, port)[1]
end
