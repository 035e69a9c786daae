/* csq_startio's user program (user_program.c): the NT-service program the example's user test runs. */
#ifndef CSQ_STARTIO_USER_PROGRAM_H
#define CSQ_STARTIO_USER_PROGRAM_H

#include <ntifs.h>

struct ustress_result;

/* Run the program against the loaded driver: 4 threads × requests_per_thread overlapped
 * requests on 3 handles, random CancelIoEx/CancelIo, handles closed mid-flight. Returns
 * STATUS_SUCCESS or the failed NtCreateFile's status. */
NTSTATUS CsqStartIoUserProgram(long requests_per_thread, struct ustress_result *out);

#endif
