/// The check-and-consume of the Redis store, as one Lua script: Redis runs a script alone, so
/// reading every count, deciding and incrementing is atomic across every client of that Redis.
///
/// `KEYS`: the request's distinct counts (one per unit and scope), then its receipt key when it
/// has an idempotency key. `ARGV`: amount, now (Unix seconds), number of counts, number of
/// limits, receipt (0/1), idempotency window; per count: seconds to live (until the window's
/// end plus a grace), window start, window end; per limit: its count's position (1-based),
/// `max`, mode (`h`, `s`, `w`).
///
/// Reply: one bulk string, `n:` (new) or `r:` (an idempotent replay) followed by
/// `refused,used1,start1,end1,used2,…` where `refused` is the refusing limit's position
/// (1-based; 0 when allowed) and each count is given after the request. Counts above 2^53 − 1
/// are refused with an `OVERFLOW` error reply before anything is written.
enum QuotaScript {
    static let source = """
        local amount = tonumber(ARGV[1])
        local now = tonumber(ARGV[2])
        local c = tonumber(ARGV[3])
        local n = tonumber(ARGV[4])
        local receipt = ARGV[5] == '1'
        if receipt then
          local stored = redis.call('GET', KEYS[c + 1])
          if stored then
            local bar = string.find(stored, '|', 1, true)
            if bar and tonumber(string.sub(stored, 1, bar - 1)) > now then
              return 'r:' .. string.sub(stored, bar + 1)
            end
          end
        end
        local used = {}
        for j = 1, c do
          used[j] = tonumber(redis.call('GET', KEYS[j]) or '0')
        end
        local base = 6 + 3 * c
        local refused = 0
        for i = 1, n do
          local at = base + 3 * (i - 1)
          local j = tonumber(ARGV[at + 1])
          if ARGV[at + 3] == 'h' and used[j] > tonumber(ARGV[at + 2]) - amount then
            refused = i
            break
          end
        end
        if refused == 0 then
          for j = 1, c do
            if used[j] > 9007199254740991 - amount then
              return redis.error_reply('OVERFLOW count ' .. j .. ' would pass 9007199254740991')
            end
          end
          for j = 1, c do
            used[j] = redis.call('INCRBY', KEYS[j], amount)
            redis.call('EXPIRE', KEYS[j], ARGV[7 + 3 * (j - 1)])
          end
        end
        local text = string.format('%d', refused)
        for j = 1, c do
          local at = 7 + 3 * (j - 1)
          text = text .. ',' .. string.format('%d', used[j]) .. ',' .. ARGV[at + 1] .. ',' .. ARGV[at + 2]
        end
        if receipt then
          redis.call('SET', KEYS[c + 1], string.format('%d', now + tonumber(ARGV[6])) .. '|' .. text, 'EX', ARGV[6])
        end
        return 'n:' .. text
        """

    static let sha = SHA1.hex(source)
}
