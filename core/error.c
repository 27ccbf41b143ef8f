/*
 * core/error.c - ch_strerror: names every code a public function returns.
 */
#include <corehub/corehub.h>

#include <string.h>

static const struct {
    int code;
    const char *text;
} ch_errors[] = {
    {CH_EUNKNOWN_TYPE, "unknown process type"},
    {CH_EALREADY, "process already started"},
    {CH_ENOPROC, "no such process"},
    {CH_EINIT, "process init refused the start"},
    {CH_ESTOPPED, "node is not running"},
    {CH_EBADID, "bad process id (1..255 bytes)"},
    {CH_EMSGSIZE, "message too large"},
    {CH_EWOULDBLOCK, "blocking call on a reactor thread"},
    {CH_EROLLEDBACK, "start rolled back"},
    {CH_ECRASHED, "process crashed handling the request"},
    {CH_ETRUNCATED, "reply truncated"},
    {CH_EPARTIAL, "some children of the batch failed"},
    {CH_EPARTITIONED, "node is in partition mode"},
};

const char *ch_strerror(int code)
{
    if (code == 0) return "success";
    for (size_t i = 0; i < sizeof(ch_errors) / sizeof(ch_errors[0]); i++)
        if (ch_errors[i].code == code) return ch_errors[i].text;
    if (code < 0 && code > -4096) return strerror(-code); /* glibc: thread-safe for codes */
    return "unknown error";
}
