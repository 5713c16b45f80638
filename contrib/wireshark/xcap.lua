-- xcap.lua: Wireshark/tshark fields for the metadata xcap writes in pcapng.
--
-- xcap keeps its per-packet metadata where any pcapng reader shows it: the
-- interface description (`source=kernel hook=... ifname=... ifindex=...
-- netns=...`), the packet id option (epb_packetid) and the packet comment
-- (`dir=In cpu=0 pid=1234 tid=1234 comm=ping drop=...`, then an optional
-- `stack:` block; files of older versions also have the interface's fields
-- and `id=0x...` in it). This postdissector parses them into fields that
-- display filters can use:
--
--   tshark -X lua_script:contrib/wireshark/xcap.lua -r f.pcapng -Y 'xcap.pid == 1234'
--
-- Install for Wireshark: copy this file to the personal Lua plugins folder
-- (~/.local/lib/wireshark/plugins/ on Linux; Help > About Wireshark >
-- Folders shows it) and restart Wireshark or press Ctrl+Shift+L.
--
-- The comment's format is written by sinks/src/comment.rs: `key=value`
-- pairs separated by single spaces; values escape `\` as `\\`, space as
-- `\s` and newline as `\n`; extra keys of a source start with `x.`.

local xcap = Proto("xcap", "xcap capture metadata")

local f = {
    source = ProtoField.string("xcap.source", "Source"),
    hook = ProtoField.string("xcap.hook", "Hook"),
    ifname = ProtoField.string("xcap.ifname", "Interface"),
    ifindex = ProtoField.uint32("xcap.ifindex", "Interface index"),
    netns = ProtoField.uint32("xcap.netns", "Network namespace (inode)"),
    dir = ProtoField.string("xcap.dir", "Direction"),
    cpu = ProtoField.uint32("xcap.cpu", "CPU"),
    pid = ProtoField.uint32("xcap.pid", "Process id"),
    tid = ProtoField.uint32("xcap.tid", "Thread id"),
    comm = ProtoField.string("xcap.comm", "Command"),
    packet_id = ProtoField.uint64("xcap.packet_id", "Packet id", base.HEX),
    queue = ProtoField.uint32("xcap.queue", "Queue"),
    retval = ProtoField.int64("xcap.retval", "Return value"),
    drop_reason = ProtoField.string("xcap.drop_reason", "Drop reason"),
    drop_location = ProtoField.string("xcap.drop_location", "Drop location"),
    stack = ProtoField.string("xcap.stack", "Stack frame"),
    extra = ProtoField.string("xcap.extra", "Source-specific"),
    latency = ProtoField.relative_time("xcap.latency", "Latency from the first hook"),
    first_hook = ProtoField.string("xcap.first_hook", "First hook of this packet"),
    first_frame = ProtoField.uint32("xcap.first_frame", "First seen in frame"),
}
local list = {}
for _, v in pairs(f) do
    list[#list + 1] = v
end
xcap.fields = list

local comment_f = Field.new("frame.comment")
local descr_f = Field.new("frame.interface_description")
local packet_id_f = Field.new("frame.packet_id")
local time_f = Field.new("frame.time")

-- `\\`, `\s`, `\n` back to what they stand for; anything else verbatim.
local function unescape(s)
    if not s:find("\\", 1, true) then
        return s
    end
    return (s:gsub("\\(.?)", function(c)
        if c == "s" then
            return " "
        elseif c == "n" then
            return "\n"
        elseif c == "\\" then
            return "\\"
        end
        return "\\" .. c
    end))
end

-- key=value pairs of one line, in order; tokens without `=` are skipped
-- (a person may have edited the comment).
local function pairs_of(line)
    local out = {}
    for tok in line:gmatch("[^ ]+") do
        local k, v = tok:match("^([^=]+)=(.*)$")
        if k then
            out[#out + 1] = { k, unescape(v) }
        end
    end
    return out
end

-- A packet is one packet across hooks while its id is seen at hooks it has
-- not passed yet, within a second (ids are addresses and get reused): the
-- same rule as `xcap --latency`. Computed on the first, in-order pass and
-- kept per frame, because Wireshark later dissects frames in any order.
local HORIZON = NSTime.new(1, 0)
local journeys = {}
local per_frame = {}

local function follow(pinfo, id, hook)
    local done = per_frame[pinfo.number]
    if done or pinfo.visited then
        return done
    end
    local t = time_f()
    if not t then
        return nil
    end
    local now = t.value
    local j = journeys[id]
    if j == nil or j.hooks[hook] or (now - j.first) > HORIZON then
        j = { first = now, first_hook = hook, first_frame = pinfo.number, hooks = {} }
        journeys[id] = j
    end
    j.hooks[hook] = true
    done = { latency = now - j.first, first_hook = j.first_hook, first_frame = j.first_frame }
    per_frame[pinfo.number] = done
    return done
end

function xcap.init()
    journeys = {}
    per_frame = {}
end

local numeric = { ifindex = true, netns = true, cpu = true, pid = true, tid = true, queue = true }
local strings = { hook = "hook", ["if"] = "ifname", dir = "dir", comm = "comm",
    drop = "drop_reason", location = "drop_location" }

function xcap.dissector(tvb, pinfo, tree)
    -- The interface: source, hook, interface name, index and namespace.
    local iface = {}
    local descr = descr_f()
    if descr then
        for _, kv in ipairs(pairs_of(descr.value)) do
            iface[kv[1]] = kv[2]
        end
    end
    local ours = iface.source ~= nil
    local comments = { comment_f() }
    local text
    for _, c in ipairs(comments) do
        local s = c.value
        -- Ours: on an interface xcap described, the comment that starts
        -- with a key=value pair; elsewhere (a file merged by another tool)
        -- one that starts as xcap's always did, with hook=, if= or dir=.
        if (ours and s:match("^[%w_.]+=")) or s:match("^hook=") or s:match("^if=")
            or s:match("^dir=") then
            text = s
            break
        end
    end
    if not ours and not text then
        return
    end
    local t = tree:add(xcap, "xcap")
    if iface.source then
        t:add(f.source, iface.source)
    end
    local first, rest = "", ""
    if text then
        first, rest = text:match("^([^\n]*)\n?(.*)$")
    end
    local kvs = pairs_of(first)
    local said = {}
    for _, kv in ipairs(kvs) do
        said[kv[1]] = true
    end
    -- What the interface holds, unless the comment says it (older files
    -- wrote it in every comment).
    local hook = iface.hook
    if hook == "" then
        hook = nil
    end
    if hook and not said.hook then
        t:add(f.hook, hook)
    end
    if iface.ifname and iface.ifname ~= "" and not said["if"] then
        t:add(f.ifname, iface.ifname)
    end
    for _, k in ipairs({ "ifindex", "netns" }) do
        local n = tonumber(iface[k] or "")
        if n and n ~= 0 and not said[k] then
            t:add(f[k], n)
        end
    end
    -- The packet id: epb_packetid, or the comment's id= in older files.
    local id
    local pid_opt = packet_id_f()
    if pid_opt and not said.id then
        id = tostring(pid_opt.value)
        t:add(f.packet_id, pid_opt.value)
    end
    for _, kv in ipairs(kvs) do
        local k, v = kv[1], kv[2]
        if numeric[k] then
            local n = tonumber(v)
            if n then
                t:add(f[k], n)
            end
        elseif strings[k] then
            t:add(f[strings[k]], v)
            if k == "hook" then
                hook = v
            end
        elseif k == "id" then
            local hex = v:match("^0x(%x+)$")
            if hex then
                id = tostring(UInt64.fromhex(hex))
                t:add(f.packet_id, UInt64.fromhex(hex))
            end
        elseif k == "ret" then
            local n = tonumber(v)
            if n then
                t:add(f.retval, Int64.new(n))
            end
        elseif k:sub(1, 2) == "x." then
            t:add(f.extra, unescape(k:sub(3)) .. "=" .. v)
        end
    end
    if rest:match("^stack:") then
        for frame in rest:gmatch("\n  ([^\n]*)") do
            t:add(f.stack, unescape(frame))
        end
    end
    if id and hook then
        local j = follow(pinfo, id, hook)
        if j then
            t:add(f.latency, j.latency):set_generated()
            t:add(f.first_hook, j.first_hook):set_generated()
            t:add(f.first_frame, j.first_frame):set_generated()
        end
    end
end

register_postdissector(xcap)
