/*
 * tests/packaging/consumer.c - a program outside the tree that uses an installed corehub.
 *
 * tests/packaging/check.sh builds it against the installed headers and library, once
 * through CMake's find_package and once through pkg-config, and runs it: if the install
 * layout, the exported targets or corehub.pc are wrong, this fails to build, link or run.
 * It calls one function by its old name too: the aliases must work for programs outside.
 */
#include <corehub/corehub.h>

#include <stdio.h>

int main(void)
{
    ch_node_config cfg;
    ch_node *node = NULL;
    ch_node_config_init(&cfg);
    cfg.cores = 1;
    int rc = ch_node_create(&cfg, &node);
    if (rc < 0) {
        fprintf(stderr, "consumer: ch_node_create: %s\n", ch_strerror(rc));
        return 1;
    }
    ch_node_destroy(node);
    if (ch_log_get_level() != ch_log_level_get()) { /* an old name, kept as an alias */
        fprintf(stderr, "consumer: the alias ch_log_get_level is not ch_log_level_get\n");
        return 1;
    }
    const char *msg = ch_strerror(CH_ENOPROC);
    if (!msg || !*msg) {
        fprintf(stderr, "consumer: ch_strerror returned nothing\n");
        return 1;
    }
    printf("consumer: corehub %d.%d.%d ok (%s)\n", COREHUB_VERSION_MAJOR, COREHUB_VERSION_MINOR,
           COREHUB_VERSION_PATCH, msg);
    return 0;
}
