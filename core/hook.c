/*
 * core/hook.c - copy-on-write hook lists (see hook.h).
 */
#include "hook.h"

#include <errno.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_ID_MAX 63

typedef struct ch_hook {
    char id[HOOK_ID_MAX + 1];
    int priority;
    ch_hook_fn fn;
    void *ud;
} ch_hook;

struct ch_hook_list {
    ch_hook_list *next_retired;
    size_t count;
    ch_hook items[];
};

int ch_hooks_init(ch_hooks *h)
{
    for (int i = 0; i < CH_HOOK_POINTS; i++)
        atomic_init(&h->points[i], NULL);
    h->retired = NULL;
    return -pthread_mutex_init(&h->lock, NULL);
}

void ch_hooks_destroy(ch_hooks *h)
{
    for (int i = 0; i < CH_HOOK_POINTS; i++)
        free(atomic_load(&h->points[i]));
    while (h->retired) {
        ch_hook_list *l = h->retired;
        h->retired = l->next_retired;
        free(l);
    }
    pthread_mutex_destroy(&h->lock);
}

static ch_hook_list *list_new(size_t count)
{
    ch_hook_list *l = malloc(sizeof(*l) + count * sizeof(ch_hook));
    if (l) {
        l->next_retired = NULL;
        l->count = count;
    }
    return l;
}

static void swap_in(ch_hooks *h, ch_hook_point point, ch_hook_list *l)
{
    ch_hook_list *old = atomic_exchange(&h->points[point], l);
    if (old) {
        old->next_retired = h->retired;
        h->retired = old;
    }
}

static ssize_t find(const ch_hook_list *l, const char *id)
{
    for (size_t i = 0; l && i < l->count; i++)
        if (strcmp(l->items[i].id, id) == 0) return (ssize_t)i;
    return -1;
}

int ch_hooks_register(ch_hooks *h, ch_hook_point point, const char *id, int priority, ch_hook_fn fn,
                      void *ud)
{
    if ((unsigned)point >= CH_HOOK_POINTS || !id || !fn) return -EINVAL;
    if (strlen(id) == 0 || strlen(id) > HOOK_ID_MAX) return -EINVAL;
    pthread_mutex_lock(&h->lock);
    ch_hook_list *old = atomic_load(&h->points[point]);
    size_t n = old ? old->count : 0;
    int rc = -EEXIST;
    if (find(old, id) >= 0) goto out;
    rc = -ENOMEM;
    ch_hook_list *l = list_new(n + 1);
    if (!l) goto out;
    size_t j = 0;
    for (size_t i = 0; i < n && old->items[i].priority >= priority; i++)
        l->items[j++] = old->items[i];
    ch_hook *it = &l->items[j++];
    memset(it, 0, sizeof(*it));
    strcpy(it->id, id);
    it->priority = priority;
    it->fn = fn;
    it->ud = ud;
    for (size_t i = j - 1; i < n; i++)
        l->items[j++] = old->items[i];
    swap_in(h, point, l);
    rc = 0;
out:
    pthread_mutex_unlock(&h->lock);
    return rc;
}

int ch_hooks_cancel(ch_hooks *h, ch_hook_point point, const char *id)
{
    if ((unsigned)point >= CH_HOOK_POINTS || !id) return -EINVAL;
    pthread_mutex_lock(&h->lock);
    ch_hook_list *old = atomic_load(&h->points[point]);
    ssize_t at = find(old, id);
    int rc = -ENOENT;
    if (at < 0) goto out;
    rc = -ENOMEM;
    ch_hook_list *l = list_new(old->count - 1);
    if (!l) goto out;
    for (size_t i = 0, j = 0; i < old->count; i++)
        if ((ssize_t)i != at) l->items[j++] = old->items[i];
    swap_in(h, point, l);
    rc = 0;
out:
    pthread_mutex_unlock(&h->lock);
    return rc;
}

int ch_hooks_any(ch_hooks *h, ch_hook_point point)
{
    ch_hook_list *l = atomic_load_explicit(&h->points[point], memory_order_acquire);
    return l && l->count > 0;
}

void ch_hooks_run(ch_hooks *h, ch_hook_event *ev)
{
    ch_hook_list *l = atomic_load_explicit(&h->points[ev->point], memory_order_acquire);
    for (size_t i = 0; l && i < l->count; i++)
        l->items[i].fn(l->items[i].ud, ev);
}
