/* Internal to the scenario files: each contributes a NULL-terminated table. */
#ifndef IRPK_EXPLORE_SCENARIOS_INT_H
#define IRPK_EXPLORE_SCENARIOS_INT_H

#include "explore/scenarios.h"

extern const xscenario xscenarios_platform[];
extern const xscenario xscenarios_io[];
extern const xscenario xscenarios_queue[];
extern const xscenario xscenarios_csq[];
/* Registers the io object describer for swimlanes. */
void xscenarios_io_init(void);

#endif
