/* tools/corehub.c - the corehub program (placeholder until the demo lands). */
#include <corehub/corehub.h>
#include <stdio.h>

int main(void)
{
    printf("corehub %d.%d.%d\n", COREHUB_VERSION_MAJOR, COREHUB_VERSION_MINOR,
           COREHUB_VERSION_PATCH);
    return 0;
}
