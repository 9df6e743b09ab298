/* The request scanner (resp_req_scan) over arbitrary client bytes, with the
 * limits of an authenticated client or of one that is not yet. */
#include "fuzz.h"
#include "base/resp.h"

struct outcome {
    uint64_t digest;   /* every frame's length, kind and argument extents */
    size_t frames;
    size_t consumed;   /* bytes of the stream in whole frames */
    const char *error; /* NULL, or where the stream stopped being RESP */
};

static struct outcome scan(const uint8_t *data, size_t size, const struct resp_limits *lim, int unauth,
                           unsigned seed)
{
    struct outcome o = {.digest = 14695981039346656037ull};
    struct evbuffer *in = evbuffer_new();
    struct resp_req r = {0};
    size_t fed = 0;
    FUZZ_CHECK(in != NULL);
    for (;;) {
        enum resp_status st = resp_req_scan(&r, in, lim, unauth);
        if (st == RESP_ERROR) {
            FUZZ_CHECK(r.error != NULL && r.error[0] != '\0');
            o.error = r.error;
            break;
        }
        if (st == RESP_PARTIAL) {
            if (fed == size)
                break;
            fed += fuzz_feed(in, data + fed, size - fed, &seed);
            continue;
        }
        /* A frame lies inside the bytes given, and so does each argument,
         * each followed by its CRLF. */
        FUZZ_CHECK(r.frame_len > 0 && r.frame_len <= evbuffer_get_length(in));
        const uint8_t *frame = data + o.consumed;
        if (r.is_inline) {
            FUZZ_CHECK(r.inline_len < r.frame_len);
            FUZZ_CHECK(frame[r.frame_len - 1] == '\n');
        } else {
            FUZZ_CHECK(r.argc <= lim->max_multibulk_len);
            for (size_t i = 0; i < r.argc; i++) {
                const struct resp_arg *a = &r.argv[i];
                FUZZ_CHECK(a->off <= r.frame_len && a->len <= lim->max_bulk_len);
                FUZZ_CHECK(a->off + a->len + 2 <= r.frame_len);
                FUZZ_CHECK(frame[a->off - 1] == '\n');
                FUZZ_CHECK(frame[a->off + a->len] == '\r' && frame[a->off + a->len + 1] == '\n');
                o.digest = fuzz_mix(o.digest, a, sizeof(*a));
            }
        }
        o.digest = fuzz_mix(o.digest, &r.frame_len, sizeof(r.frame_len));
        o.digest = fuzz_mix(o.digest, &r.is_inline, sizeof(r.is_inline));
        o.digest = fuzz_mix(o.digest, &r.argc, sizeof(r.argc));
        o.consumed += r.frame_len;
        o.frames++;
        evbuffer_drain(in, r.frame_len);
        resp_req_reset(&r);
    }
    resp_req_deinit(&r);
    evbuffer_free(in);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* The first byte picks the client's state and the pieces' sizes. */
    int unauth = data[0] & 1;
    unsigned seed = 1u + data[1];
    data += 2;
    size -= 2;
    const struct resp_limits lim = {.max_bulk_len = 1024, .max_inline_len = 256, .max_multibulk_len = 64};
    struct outcome whole = scan(data, size, &lim, unauth, 0);
    struct outcome pieces = scan(data, size, &lim, unauth, seed);
    FUZZ_CHECK(whole.frames == pieces.frames && whole.consumed == pieces.consumed);
    FUZZ_CHECK(whole.digest == pieces.digest);
    FUZZ_CHECK((whole.error == NULL) == (pieces.error == NULL));
    return 0;
}
