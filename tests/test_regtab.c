/*
 * tests/test_regtab.c - the registry replica table: find, replace, remove under load, and
 * the row digest that anti-entropy compares.
 */
#include "net/cluster/regtab.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ch_regrow *row(uint64_t node, const char *id, uint32_t inc)
{
    ch_regrow *r = ch_regrow_new(node, 1, inc, id, strlen(id), "counter", 7, "t", 1, 0, 5000, "arg",
                                 3, NULL, 0);
    cr_assert_not_null(r);
    return r;
}

Test(regtab, rows_keep_every_part_of_the_spec)
{
    ch_regrow *r = row(9, "alpha", 2);
    cr_assert_str_eq(ch_regrow_id(r), "alpha");
    cr_assert_str_eq(ch_regrow_type(r), "counter");
    cr_assert_str_eq(ch_regrow_tag(r), "t");
    cr_assert_eq(memcmp(ch_regrow_arg(r), "arg", 3), 0);
    ch_proc_info *info = ch_regrow_info(r);
    cr_assert_eq(info->node, 9);
    cr_assert_eq(info->incarnation, 2);
    cr_assert_str_eq(info->type, "counter");
    cr_assert_eq(info->arg_len, 3);
    free(info);
    free(r);
}

Test(regtab, oversize_parts_are_refused)
{
    char big[300];
    memset(big, 'x', sizeof(big));
    cr_assert_null(ch_regrow_new(1, 0, 0, big, sizeof(big), "t", 1, "", 0, 0, 0, NULL, 0, NULL, 0));
    cr_assert_null(ch_regrow_new(1, 0, 0, "", 0, "t", 1, "", 0, 0, 0, NULL, 0, NULL, 0));
}

Test(regtab, insert_replace_remove_many)
{
    ch_regtab t;
    cr_assert_eq(ch_regtab_init(&t), 0);
    enum { N = 50000 };
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        ch_regrow *old;
        cr_assert_eq(ch_regtab_put(&t, row(1, id, 0), &old), 0);
        cr_assert_null(old);
    }
    cr_assert_eq(t.count, N);
    for (int i = 0; i < N; i += 2) { /* a newer owner replaces half of them */
        snprintf(id, sizeof(id), "p%d", i);
        ch_regrow *old;
        cr_assert_eq(ch_regtab_put(&t, row(2, id, 1), &old), 0);
        cr_assert_not_null(old);
        cr_assert_eq(old->node, 1);
        free(old);
    }
    cr_assert_eq(t.count, N);
    for (int i = 1; i < N; i += 2) {
        snprintf(id, sizeof(id), "p%d", i);
        ch_regrow *probe = row(1, id, 0);
        ch_regrow *r = ch_regtab_find(&t, probe->hash, id, strlen(id));
        free(probe);
        cr_assert_not_null(r);
        ch_regtab_remove(&t, r);
        free(r);
    }
    cr_assert_eq(t.count, N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        ch_regrow *probe = row(0, id, 0);
        ch_regrow *r = ch_regtab_find(&t, probe->hash, id, strlen(id));
        free(probe);
        if (i % 2)
            cr_assert_null(r, "%s was removed", id);
        else
            cr_assert(r && r->node == 2, "%s is owned by node 2", id);
    }
    ch_regtab_free(&t);
}

Test(regtab, digest_depends_on_incarnation)
{
    ch_regrow *a = row(1, "x", 0), *b = row(1, "x", 1);
    cr_assert_neq(ch_regrow_digest(a), ch_regrow_digest(b));
    free(a);
    free(b);
}

Test(regtab, a_duplicated_row_has_every_part_and_its_own_memory)
{
    ch_regrow *r = ch_regrow_new(7, 3, 2, "dup-id", 6, "tp", 2, "tag", 3, 1, 500, "arg", 3, "m", 1);
    cr_assert_not_null(r);
    ch_regrow *d = ch_regrow_dup(r);
    cr_assert_not_null(d);
    cr_assert_neq(d, r);
    cr_assert_eq(d->node, 7);
    cr_assert_eq(d->core, 3);
    cr_assert_eq(d->hash, r->hash);
    cr_assert_str_eq(ch_regrow_id(d), "dup-id");
    cr_assert_str_eq(ch_regrow_type(d), "tp");
    cr_assert_str_eq(ch_regrow_tag(d), "tag");
    cr_assert_eq(memcmp(ch_regrow_arg(d), "arg", 3), 0);
    cr_assert_eq(memcmp(ch_regrow_meta(d), "m", 1), 0);
    free(r);
    cr_assert_str_eq(ch_regrow_id(d), "dup-id", "the copy outlives the original");
    free(d);
}
