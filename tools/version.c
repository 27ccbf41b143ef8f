/*
 * tools/version.c - `corehub version`: the version the program was built with.
 */
#include "cli.h"

#include <corehub/corehub.h>

#include <stdio.h>

int cmd_version(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: corehub version\n");
        return CLI_USAGE;
    }
    printf("corehub %d.%d.%d\n", COREHUB_VERSION_MAJOR, COREHUB_VERSION_MINOR,
           COREHUB_VERSION_PATCH);
    return CLI_OK;
}
