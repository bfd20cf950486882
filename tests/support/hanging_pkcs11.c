/* A PKCS#11 module that hangs on purpose, for the "window never freezes" tests (issue 18).
 *
 * It behaves like a reader with no token inserted, except that C_GetSlotList and C_Login block
 * for as long as the file named by the environment variable KYSO_HANG_GATE exists (checked
 * every 5 ms), the way a stuck USB token driver does. Deleting the file releases every blocked
 * call. C_Initialize blocks the same way on the file named by KYSO_HANG_INIT_GATE (a driver
 * that hangs as the agent starts; a separate gate, because the agent re-initialises a module
 * with no token while it polls). Every other function answers CKR_FUNCTION_NOT_SUPPORTED.
 *
 * Self-contained (no pkcs11.h needed): a CK_FUNCTION_LIST is a CK_VERSION followed by the 68
 * function pointers of PKCS#11 v2.40 in their fixed order; only the indexes below matter.
 * Calling the catch-all with any arguments is fine on the x86-64 and aarch64 C ABIs.
 * Built by tests/support/hanging_module.py with gcc during the test session.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long CK_RV;
typedef unsigned long CK_ULONG;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct {
    CK_VERSION cryptokiVersion;
    unsigned char manufacturerID[32];
    CK_ULONG flags;
    unsigned char libraryDescription[32];
    CK_VERSION libraryVersion;
} CK_INFO;

#define FUNCTIONS 68
#define I_GET_INFO 2
#define I_GET_FUNCTION_LIST 3
#define I_GET_SLOT_LIST 4
#define I_LOGIN 18
#define CKR_OK 0UL
#define CKR_ARGUMENTS_BAD 7UL
#define CKR_FUNCTION_NOT_SUPPORTED 0x54UL

typedef struct {
    CK_VERSION version;
    void *functions[FUNCTIONS];
} FUNCTION_LIST;

static FUNCTION_LIST table;

static void wait_at(const char *variable) {
    const char *gate = getenv(variable);
    struct timespec pause = {0, 5 * 1000 * 1000};
    while (gate != NULL && access(gate, F_OK) == 0) nanosleep(&pause, NULL);
}

static void wait_at_gate(void) { wait_at("KYSO_HANG_GATE"); }

static CK_RV not_supported(void) { return CKR_FUNCTION_NOT_SUPPORTED; }
static CK_RV ok(void *unused) { (void)unused; return CKR_OK; }

static CK_RV initialize(void *unused) {
    (void)unused;
    wait_at("KYSO_HANG_INIT_GATE");
    return CKR_OK;
}

static CK_RV get_info(CK_INFO *info) {
    if (info == NULL) return CKR_ARGUMENTS_BAD;
    memset(info, ' ', sizeof *info);
    info->cryptokiVersion.major = 2;
    info->cryptokiVersion.minor = 40;
    memcpy(info->manufacturerID, "Kyso tests", 10);
    info->flags = 0;
    memcpy(info->libraryDescription, "Hanging module", 14);
    info->libraryVersion.major = 1;
    info->libraryVersion.minor = 0;
    return CKR_OK;
}

static CK_RV get_slot_list(unsigned char present, CK_ULONG *slots, CK_ULONG *count) {
    (void)present;
    (void)slots;
    wait_at_gate();
    if (count == NULL) return CKR_ARGUMENTS_BAD;
    *count = 0; /* no token inserted */
    return CKR_OK;
}

static CK_RV login(CK_ULONG session, CK_ULONG user, void *pin, CK_ULONG length) {
    (void)session; (void)user; (void)pin; (void)length;
    wait_at_gate();
    return 0xB3UL; /* CKR_SESSION_HANDLE_INVALID: there are no sessions here */
}

CK_RV C_GetFunctionList(FUNCTION_LIST **list) {
    if (list == NULL) return CKR_ARGUMENTS_BAD;
    table.version.major = 2;
    table.version.minor = 40;
    for (int i = 0; i < FUNCTIONS; i++) table.functions[i] = (void *)not_supported;
    table.functions[0] = (void *)initialize;  /* C_Initialize */
    table.functions[1] = (void *)ok;  /* C_Finalize */
    table.functions[I_GET_INFO] = (void *)get_info;
    table.functions[I_GET_FUNCTION_LIST] = (void *)C_GetFunctionList;
    table.functions[I_GET_SLOT_LIST] = (void *)get_slot_list;
    table.functions[I_LOGIN] = (void *)login;
    *list = &table;
    return CKR_OK;
}
