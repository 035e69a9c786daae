/* Explorer scenarios that run the seed's sample driver itself (examples/hello_startio): `sample`
 * (the corrected driver) and `sample-as-written`. They live outside the library, which cannot
 * depend on examples/; the CLI and the tests register them. */
#ifndef IRPK_EXPLORE_HELLO_H
#define IRPK_EXPLORE_HELLO_H

/* Register both scenarios with irpk_explore_register_scenario (idempotent). */
void irpk_explore_hello_register(void);

#endif
