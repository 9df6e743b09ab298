/* The config parser (conf_parse, libyaml underneath) over arbitrary text:
 * a config is accepted or refused with at least one error, never both. */
#include "model/conf.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conf_diag diag = {0};
    struct conf *c = conf_parse("fuzz.yml", (const char *)data, size, &diag);
    FUZZ_CHECK((c == NULL) == (diag.nerrors > 0));
    for (size_t i = 0; i < diag.nerrors; i++)
        FUZZ_CHECK(diag.errors[i] != NULL);
    conf_unref(c);
    conf_diag_free(&diag);
    return 0;
}
