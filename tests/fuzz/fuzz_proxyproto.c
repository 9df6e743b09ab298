/* The PROXY protocol header parser (proxyproto_parse): its answer is a
 * length inside the bytes given and the limit, and the same answer for any
 * longer input; a shorter start of an accepted header is "not yet". */
#include <string.h>

#include "fuzz.h"
#include "base/proxyproto.h"

static int parse(const uint8_t *data, size_t size, struct proxyproto_result *out)
{
    char why[128];
    memset(why, 0x55, sizeof(why));
    int n = proxyproto_parse(data, size, out, why, sizeof(why));
    FUZZ_CHECK(n >= -1);
    if (n < 0)
        FUZZ_CHECK(why[0] != '\0' && memchr(why, '\0', sizeof(why)) != NULL);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxyproto_result out, again;
    int n = parse(data, size, &out);
    if (n <= 0)
        return 0;
    FUZZ_CHECK((size_t)n <= size && n <= PROXYPROTO_MAX);
    FUZZ_CHECK(out.version == 1 || out.version == 2);
    FUZZ_CHECK(out.local || (out.srclen > 0 && out.srclen <= sizeof(out.src)));
    FUZZ_CHECK(parse(data, (size_t)n, &again) == n);
    FUZZ_CHECK(again.version == out.version && again.local == out.local && again.srclen == out.srclen);
    FUZZ_CHECK(out.local || memcmp(&again.src, &out.src, out.srclen) == 0);
    FUZZ_CHECK(parse(data, (size_t)n - 1, &again) == 0);
    FUZZ_CHECK(parse(data, (size_t)n / 2, &again) == 0);
    return 0;
}
