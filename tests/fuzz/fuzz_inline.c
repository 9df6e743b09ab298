/* The inline request splitter (resp_inline_to_multibulk): whatever the
 * line, what it makes is one well-formed multibulk frame with as many
 * arguments as it says, which the request scanner cuts whole. */
#include "fuzz.h"
#include "base/resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct evbuffer *out = evbuffer_new();
    FUZZ_CHECK(out != NULL);
    int argc = resp_inline_to_multibulk((const char *)data, size, out);
    FUZZ_CHECK(argc >= -1);
    if (argc <= 0) {
        FUZZ_CHECK(evbuffer_get_length(out) == 0);
    } else {
        /* Redis's defaults, which an inline line of at most 64 KiB never reaches. */
        const struct resp_limits lim = {.max_bulk_len = 512u << 20, .max_inline_len = 64u << 10,
                                        .max_multibulk_len = 1024u * 1024};
        struct resp_req r = {0};
        FUZZ_CHECK(resp_req_scan(&r, out, &lim, 0) == RESP_FRAME);
        FUZZ_CHECK(!r.is_inline && r.argc == (size_t)argc);
        FUZZ_CHECK(r.frame_len == evbuffer_get_length(out));
        size_t payload = 0;
        for (size_t i = 0; i < r.argc; i++)
            payload += r.argv[i].len;
        FUZZ_CHECK(payload <= size); /* escapes only ever shorten */
        resp_req_deinit(&r);
    }
    evbuffer_free(out);
    return 0;
}
