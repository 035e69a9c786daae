/* The explorer scenario that runs examples/csq_startio's driver itself (`csq-startio`). It
 * lives outside the library, which cannot depend on examples/; the CLI registers it at
 * start-up and the example's test uses it from here. */
#ifndef IRPK_EXPLORE_CSQ_H
#define IRPK_EXPLORE_CSQ_H

/* Register it with irpk_explore_register_scenario (idempotent). */
void irpk_explore_csq_register(void);

#endif
