/* The reply scanner (resp_reply_scan) over arbitrary node bytes, RESP2 and
 * RESP3 alike: it reads what the nodes send, and a node's bytes must not
 * crash respgate either. */
#include "fuzz.h"
#include "base/resp.h"

struct outcome {
    uint64_t digest;
    size_t frames;
    size_t consumed;
    int error;
};

static struct outcome scan(const uint8_t *data, size_t size, unsigned seed)
{
    struct outcome o = {.digest = 14695981039346656037ull};
    struct evbuffer *in = evbuffer_new();
    struct resp_reply r = {0};
    size_t fed = 0;
    FUZZ_CHECK(in != NULL);
    for (;;) {
        enum resp_status st = resp_reply_scan(&r, in);
        if (st == RESP_ERROR) {
            FUZZ_CHECK(r.error != NULL && r.error[0] != '\0');
            o.error = 1;
            break;
        }
        if (st == RESP_PARTIAL) {
            if (fed == size)
                break;
            fed += fuzz_feed(in, data + fed, size - fed, &seed);
            continue;
        }
        /* A reply starts with its type and ends with a line end, inside
         * the bytes given. */
        FUZZ_CHECK(r.len >= 3 && r.len <= evbuffer_get_length(in));
        FUZZ_CHECK(r.type == (char)data[o.consumed]);
        FUZZ_CHECK(data[o.consumed + r.len - 2] == '\r' && data[o.consumed + r.len - 1] == '\n');
        o.digest = fuzz_mix(o.digest, &r.len, sizeof(r.len));
        o.consumed += r.len;
        o.frames++;
        evbuffer_drain(in, r.len);
        r = (struct resp_reply){0};
    }
    evbuffer_free(in);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned seed = 1u + data[0];
    struct outcome whole = scan(data + 1, size - 1, 0);
    struct outcome pieces = scan(data + 1, size - 1, seed);
    FUZZ_CHECK(whole.frames == pieces.frames && whole.consumed == pieces.consumed);
    FUZZ_CHECK(whole.digest == pieces.digest && whole.error == pieces.error);
    return 0;
}
