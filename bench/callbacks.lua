-- wrk script of the webhook measure: POST pre-built, signed callbacks, each thread its own share.
-- args: <file> <threads>; each line of <file> is "path<TAB>timestamp<TAB>signature<TAB>body".
-- Thread k takes lines k, k+threads, k+2*threads, ... and cycles through them.
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local nthreads = tonumber(args[2])
  reqs = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then
      local path, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {["Content-Type"] = "application/json"}
      if ts ~= "" then
        headers["X-Webhook-Timestamp"] = ts
        headers["X-Webhook-Signature"] = sig
      end
      table.insert(reqs, wrk.format("POST", path, headers, body))
    end
    i = i + 1
  end
  idx = 0
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end
