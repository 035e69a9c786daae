#include "qtest.h"
