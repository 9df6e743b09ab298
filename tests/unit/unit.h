/*
 * unit: what every Check test program shares: a main() that runs one suite,
 * forked, and exits non-zero on any failure.
 */
#ifndef RG_UNIT_H
#define RG_UNIT_H

#include <check.h>
#include <stdlib.h>

#define UNIT_MAIN(make_suite)                                        \
    int main(void)                                                   \
    {                                                                \
        SRunner *sr = srunner_create(make_suite());                  \
        srunner_run_all(sr, CK_NORMAL);                              \
        int failed = srunner_ntests_failed(sr);                      \
        srunner_free(sr);                                            \
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;                 \
    }

#endif
