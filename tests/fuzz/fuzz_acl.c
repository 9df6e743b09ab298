/* The ACL rules parser (acl_user_new) and Redis's glob (acl_glob), which a
 * config's users: and every key a restricted user sends reach: a user is
 * made or refused with a reason; a glob answers in bounded work. */
#include <string.h>

#include "model/acl.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* RULES, then after a NUL a pattern and after another a string. */
    const char *text = (const char *)data, *end = text + size;
    const char *nul = memchr(text, '\0', size);
    char rules[1024];
    size_t n = (nul ? (size_t)(nul - text) : size);
    if (n >= sizeof(rules))
        n = sizeof(rules) - 1;
    memcpy(rules, text, n);
    rules[n] = '\0';
    char why[256] = "";
    struct acl_user *u = acl_user_new("fuzz", rules, why, sizeof(why));
    FUZZ_CHECK(u != NULL || why[0] != '\0');
    if (nul) {
        const char *pat = nul + 1, *nul2 = memchr(pat, '\0', (size_t)(end - pat));
        const char *s = nul2 ? nul2 + 1 : end;
        size_t plen = (size_t)((nul2 ? nul2 : end) - pat), slen = (size_t)(end - s);
        int m = acl_glob(pat, plen, s, slen);
        FUZZ_CHECK(m == 0 || m == 1);
        FUZZ_CHECK(acl_glob("*", 1, s, slen) == 1);
        FUZZ_CHECK(acl_glob(s, slen, s, slen) == 1 || memchr(s, '*', slen) || memchr(s, '?', slen) ||
                   memchr(s, '[', slen) || memchr(s, '\\', slen)); /* a literal matches itself */
        if (u)
            (void)acl_key_ok(u, s, slen);
    }
    acl_user_free(u);
    return 0;
}
