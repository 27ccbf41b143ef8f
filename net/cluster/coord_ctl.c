/*
 * net/cluster/coord_ctl.c - control requests (`corehub ctl`): authenticated like peers, handled
 * by the application's handler on a thread of its own (blocking calls are fine there),
 * answered on the connection if it is still open.
 */
#include "coord_int.h"

struct ctl_job {
    ctl_job *next;
    ch_coord *c;
    uint64_t serial; /* the control connection's serial (see ctl_conns) */
    int argc;
    char **argv;
    char *argbuf;
    int status;
    ch_wbuf out;
};

struct ch_ctl_reply {
    ch_wbuf *w;
};

/* ---- control requests ---------------------------------------------------------------- */

int ch_ctl_reply_append(ch_ctl_reply *r, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    if ((size_t)n < sizeof(line)) return ch_wbuf_put_bytes(r->w, line, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = ch_wbuf_put_bytes(r->w, big, (size_t)n);
    free(big);
    return rc;
}

static void coord_ctl_job_free(ctl_job *j)
{
    free(j->argv);
    free(j->argbuf);
    ch_wbuf_free(&j->out);
    free(j);
}

/* Back on the coordinator: answer on the connection if it is still there. */
static void ctl_answer(ch_node *n, void *ud)
{
    ctl_job *j = ud;
    ch_coord *c = n->coord;
    ch_conn *conn = NULL; /* the connection may have closed while the handler ran */
    for (size_t i = 0; i < c->ctl.n; i++)
        if (c->ctl.conns[i].serial == j->serial) conn = c->ctl.conns[i].conn;
    if (conn) {
        ch_wbuf w;
        ch_wbuf_init(&w);
        ch_wbuf_put_u32(&w, (uint32_t)j->status);
        if (j->out.err || j->out.len > CH_FRAME_MAX - 64) { /* the answer must reach the client */
            ch_wbuf_reset(&w);
            ch_wbuf_put_u32(&w, 4);
            static const char msg[] = "error: the answer is too large to send\n";
            ch_wbuf_put_blob32(&w, msg, sizeof(msg) - 1);
        } else {
            ch_wbuf_put_blob32(&w, j->out.data ? j->out.data : (const uint8_t *)"", j->out.len);
        }
        if (!w.err) ch_conn_send(conn, CH_F_CTL_RESP, w.data, w.len);
        ch_wbuf_free(&w);
    }
    coord_ctl_job_free(j);
}

void *coord_ctl_main(void *arg)
{
    ch_coord *c = arg;
    ch_log_thread_name("ctl");
    pthread_mutex_lock(&c->ctl.mu);
    for (;;) {
        while (!c->ctl.head && !c->ctl.quit)
            pthread_cond_wait(&c->ctl.cv, &c->ctl.mu);
        if (!c->ctl.head) break;
        ctl_job *j = c->ctl.head;
        c->ctl.head = j->next;
        if (!c->ctl.head) c->ctl.tail = NULL;
        pthread_mutex_unlock(&c->ctl.mu);
        ch_ctl_reply reply = {.w = &j->out};
        if (c->ctl.handler)
            j->status = c->ctl.handler(c->ctl.ud, j->argc, j->argv, &reply);
        else
            j->status = 127, ch_ctl_reply_append(&reply, "no control handler on this node\n");
        ch_post post = {.fn = ctl_answer, .ud = j};
        ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
        if (ch_reactor_post(c->n, c->n->cores, &h, NULL, &post, false) < 0) coord_ctl_job_free(j);
        pthread_mutex_lock(&c->ctl.mu);
    }
    pthread_mutex_unlock(&c->ctl.mu);
    return NULL;
}

static ctl_job *ctl_parse(ch_rbuf *rb)
{
    uint32_t argc = ch_rbuf_get_u32(rb);
    if (!ch_rbuf_ok(rb) || argc == 0 || argc > CTL_MAX_ARGS) return NULL;
    ctl_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    ch_wbuf_init(&j->out);
    j->argv = calloc(argc + 1, sizeof(char *));
    j->argbuf = malloc(ch_rbuf_left(rb) + argc + 1);
    size_t at = 0;
    for (uint32_t i = 0; j->argv && j->argbuf && i < argc; i++) {
        ch_span s = ch_rbuf_get_blob32(rb);
        if (!ch_rbuf_ok(rb) || memchr(s.p, '\0', s.len)) break;
        memcpy(j->argbuf + at, s.p, s.len);
        j->argbuf[at + s.len] = '\0';
        j->argv[i] = j->argbuf + at;
        at += s.len + 1;
        j->argc = (int)i + 1;
    }
    if (j->argc != (int)argc || !ch_rbuf_done(rb)) {
        coord_ctl_job_free(j);
        return NULL;
    }
    return j;
}

void coord_on_ctl_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    ctl_job *j = ctl_parse(rb);
    if (!j) {
        CH_WARN("malformed control request from %s: closing", ch_conn_addr(conn));
        ch_conn_close(conn, -EBADMSG);
        return;
    }
    j->c = c;
    j->serial = (uintptr_t)ch_conn_ud(conn);
    pthread_mutex_lock(&c->ctl.mu);
    if (c->ctl.tail)
        c->ctl.tail->next = j;
    else
        c->ctl.head = j;
    c->ctl.tail = j;
    pthread_cond_signal(&c->ctl.cv);
    pthread_mutex_unlock(&c->ctl.mu);
}

int ch_node_ctl_handler_set(ch_node *n, ch_ctl_handler handler, void *ud)
{
    if (!n || !n->coord) return -EINVAL;
    if (atomic_load(&n->state) != CH_NODE_CREATED) return -EBUSY;
    n->coord->ctl.handler = handler;
    n->coord->ctl.ud = ud;
    return 0;
}

/* After the reactors are gone: stop the control thread and drop unanswered requests. */
void coord_ctl_stop(ch_coord *c)
{
    if (c->ctl.running) {
        pthread_mutex_lock(&c->ctl.mu);
        c->ctl.quit = true;
        pthread_cond_signal(&c->ctl.cv);
        pthread_mutex_unlock(&c->ctl.mu);
        pthread_join(c->ctl.thread, NULL);
        c->ctl.running = false;
    }
    while (c->ctl.head) {
        ctl_job *j = c->ctl.head;
        c->ctl.head = j->next;
        coord_ctl_job_free(j);
    }
}
