/*
 * floor: the benchmark's "physical floor", a minimal SOCKS5 splice relay.
 *
 * What it speaks: SOCKS5 (RFC 1928) CONNECT to an IPv4 or IPv6 address, no
 * authentication (method 00) only. Domain names get reply 08 (resolving
 * one would block the event loop: getaddrinfo has no non-blocking form),
 * other commands 07, a greeting without method 00 gets 05 FF. No timeouts,
 * no logging, no limits but the descriptor limit (raised to its hard value):
 * it exists to be measured, not to be deployed.
 *
 * Design:
 * - One epoll loop per worker thread (-t N, default 1), each with its own
 *   listening socket on the same address (SO_REUSEPORT: the kernel spreads
 *   connections over them), its own run queue and its own pipe pool; the
 *   threads share nothing.
 * - Edge-triggered: each socket is registered once (EPOLLIN | EPOLLOUT |
 *   EPOLLRDHUP | EPOLLET) and never modified. An event only sets the
 *   side's "readable" / "writable" flag and puts its connection on the run
 *   queue; a flag is cleared only when a call on that socket returns EAGAIN
 *   (or a short recv, which on TCP means the queue was emptied). So no
 *   epoll_ctl per state change, and no wake-up for a socket we are not
 *   waiting for. The listener is level-triggered (accepts at most 64 per
 *   wake-up, the rest on the next turn).
 * - Fair run order: after each epoll_wait the run queue (FIFO) is run once
 *   as it stands; a connection that used up its budget in a direction while
 *   it could go on is put back at the tail and runs again after everyone
 *   else and after the next epoll_wait (with timeout 0 while the queue is
 *   not empty). Connections are freed only while the queue runs, after the
 *   batch of events that may point to them has been handled.
 * - Relay: per direction, splice(2) socket -> pipe -> socket. A pipe is
 *   taken from the worker's pool only when a splice into it is about to be
 *   made, and given back the moment it is empty again: an idle relay holds
 *   no pipe, and a pipe in the pool is always empty. Bytes go into a pipe
 *   only while it is empty (so an EAGAIN from the splice in can only mean
 *   "socket empty", never "pipe full"), then out until it is empty again.
 *   Each direction moves at most the budget (-b, default 1 MiB) per turn.
 *   Pipes are sized with F_SETPIPE_SZ (-p, default 256 KiB, as sixsocks).
 * - Half-close: EOF from one side is passed on as shutdown(SHUT_WR) to the
 *   other once the pipe is drained; when both directions have ended, or on
 *   any error, both sockets are closed (a pipe still holding bytes is
 *   closed, not pooled).
 * - The handshake: the client's bytes are read into a 520-byte buffer
 *   (the longest greeting plus the longest request taken) that is freed
 *   once the request is answered; bytes the client sent after its request
 *   are sent to the target before anything spliced. The reply names the
 *   outbound socket's local address.
 *
 * Build: gcc -O2 -Wall -Wextra -o floor floor.c -lpthread
 * Usage: floor [-l ADDR:PORT] [-t THREADS] [-b BUDGET] [-p PIPE_BYTES]
 *        (ADDR is numeric; IPv6 in brackets: -l [::1]:1080)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define HS_MAX 520   /* greeting (2 + 255) + request (4 + 1 + 255 + 2) */
#define MAX_EVENTS 256
#define ACCEPTS_PER_WAKE 64
#define POOL_MAX 256 /* empty pipes kept per worker; more are closed */

enum { HS, CONNECTING, RELAY };

struct side {
    int fd;
    uint8_t rd, wr; /* readiness seen and not yet used up (EAGAIN) */
};

struct dir {      /* one direction: s[i] -> s[1 - i] for d[i] */
    int p[2];     /* the pipe, -1 when none is held */
    uint32_t n;   /* bytes in the pipe */
    uint8_t eof;  /* the source has ended */
    uint8_t shut; /* ... and the end was passed on */
};

struct conn {
    struct side s[2]; /* 0: client, 1: target */
    struct dir d[2];  /* 0: client -> target, 1: target -> client */
    struct conn *next;
    uint8_t state, queued, greeted;
    uint16_t hs_len, hs_off;
    unsigned char *hs; /* handshake buffer, NULL once answered and flushed */
};

struct worker {
    int ep, lfd, spare;
    struct conn *head, *tail;
    int npool;
    int pool[POOL_MAX][2];
};

static struct sockaddr_storage listen_addr;
static socklen_t listen_len;
static size_t budget = 1 << 20;
static int pipe_size = 256 * 1024;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void enqueue(struct worker *w, struct conn *c)
{
    if (c->queued)
        return;
    c->queued = 1;
    c->next = NULL;
    if (w->tail)
        w->tail->next = c;
    else
        w->head = c;
    w->tail = c;
}

static int get_pipe(struct worker *w, int p[2])
{
    if (w->npool > 0) {
        w->npool--;
        p[0] = w->pool[w->npool][0];
        p[1] = w->pool[w->npool][1];
        return 0;
    }
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    /* Best effort: a smaller pipe works, only with more calls. */
    (void)fcntl(p[0], F_SETPIPE_SZ, pipe_size);
    return 0;
}

/* Gives an empty pipe back to the pool; a pipe holding bytes is closed. */
static void put_pipe(struct worker *w, struct dir *d)
{
    if (d->p[0] < 0)
        return;
    if (d->n == 0 && w->npool < POOL_MAX) {
        w->pool[w->npool][0] = d->p[0];
        w->pool[w->npool][1] = d->p[1];
        w->npool++;
    } else {
        close(d->p[0]);
        close(d->p[1]);
    }
    d->p[0] = d->p[1] = -1;
}

static void close_conn(struct worker *w, struct conn *c)
{
    for (int i = 0; i < 2; i++) {
        if (c->s[i].fd >= 0)
            close(c->s[i].fd); /* also leaves the epoll set */
        put_pipe(w, &c->d[i]);
    }
    free(c->hs);
    free(c);
}

static int watch(struct worker *w, struct conn *c, int i)
{
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = (uintptr_t)c | (uintptr_t)i,
    };
    return epoll_ctl(w->ep, EPOLL_CTL_ADD, c->s[i].fd, &ev);
}

static int send_all(int fd, const void *b, size_t len)
{
    /* Short replies to a socket that has sent nothing yet: they fit. */
    return send(fd, b, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* A SOCKS5 reply; `a` (the bound address) may be NULL. */
static int reply(int fd, uint8_t code, const struct sockaddr_storage *a)
{
    unsigned char r[22] = {5, code, 0, 1};
    size_t len = 10;
    if (a && a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)a;
        r[3] = 4;
        memcpy(r + 4, &s->sin6_addr, 16);
        memcpy(r + 20, &s->sin6_port, 2);
        len = 22;
    } else if (a && a->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)a;
        memcpy(r + 4, &s->sin_addr, 4);
        memcpy(r + 8, &s->sin_port, 2);
    }
    return send_all(fd, r, len);
}

static uint8_t errno_code(int e)
{
    switch (e) {
    case ECONNREFUSED: return 5;
    case ENETUNREACH: return 3;
    case EHOSTUNREACH: return 4;
    case ETIMEDOUT: return 6;
    default: return 1;
    }
}

static void fail(struct worker *w, struct conn *c, uint8_t code)
{
    (void)reply(c->s[0].fd, code, NULL);
    close_conn(w, c);
}

static void relay(struct worker *w, struct conn *c);

static void connected(struct worker *w, struct conn *c)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    if (getsockname(c->s[1].fd, (struct sockaddr *)&a, &len) < 0 ||
        reply(c->s[0].fd, 0, &a) < 0) {
        close_conn(w, c);
        return;
    }
    if (c->hs_off == c->hs_len) { /* nothing sent past the request */
        free(c->hs);
        c->hs = NULL;
    }
    c->state = RELAY;
    relay(w, c);
}

/* Reads and answers the greeting and the request. */
static void handshake(struct worker *w, struct conn *c)
{
    struct side *cl = &c->s[0];
    if (!cl->rd)
        return;
    size_t room = HS_MAX - c->hs_len;
    ssize_t n = recv(cl->fd, c->hs + c->hs_len, room, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close_conn(w, c);
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN)
            cl->rd = 0;
        else
            enqueue(w, c); /* EINTR: again next turn */
        return;
    }
    if ((size_t)n < room)
        cl->rd = 0; /* TCP: a short read emptied the receive queue */
    c->hs_len += n;
    unsigned char *b = c->hs + c->hs_off;
    size_t have = c->hs_len - c->hs_off;
    if (!c->greeted) {
        if (have < 2)
            return;
        if (b[0] != 5) {
            close_conn(w, c);
            return;
        }
        if (have < 2 + (size_t)b[1])
            return;
        if (!memchr(b + 2, 0, b[1])) {
            (void)send_all(cl->fd, "\x05\xff", 2);
            close_conn(w, c);
            return;
        }
        if (send_all(cl->fd, "\x05\x00", 2) < 0) {
            close_conn(w, c);
            return;
        }
        c->greeted = 1;
        c->hs_off += 2 + b[1];
        b = c->hs + c->hs_off;
        have = c->hs_len - c->hs_off;
    }
    if (have < 4)
        return;
    if (b[0] != 5) {
        close_conn(w, c);
        return;
    }
    if (b[1] != 1) {
        fail(w, c, 7);
        return;
    }
    struct sockaddr_storage t;
    memset(&t, 0, sizeof t);
    socklen_t tlen;
    size_t need;
    if (b[3] == 1) {
        struct sockaddr_in *s = (void *)&t;
        if (have < (need = 10))
            return;
        s->sin_family = AF_INET;
        memcpy(&s->sin_addr, b + 4, 4);
        memcpy(&s->sin_port, b + 8, 2);
        tlen = sizeof *s;
    } else if (b[3] == 4) {
        struct sockaddr_in6 *s = (void *)&t;
        if (have < (need = 22))
            return;
        s->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, b + 4, 16);
        memcpy(&s->sin6_port, b + 20, 2);
        tlen = sizeof *s;
    } else {
        fail(w, c, 8); /* domain names (03) included: see the top */
        return;
    }
    c->hs_off += need;
    int fd = socket(t.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(w, c, 1);
        return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->s[1].fd = fd;
    int r = connect(fd, (struct sockaddr *)&t, tlen);
    if (r < 0 && errno != EINPROGRESS) {
        fail(w, c, errno_code(errno));
        return;
    }
    if (watch(w, c, 1) < 0) {
        fail(w, c, 1);
        return;
    }
    if (r == 0) {
        connected(w, c);
        return;
    }
    c->state = CONNECTING;
}

static void connecting(struct worker *w, struct conn *c)
{
    if (!c->s[1].wr)
        return; /* woken by the client: its bytes wait in its socket */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->s[1].fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        fail(w, c, errno_code(err));
        return;
    }
    connected(w, c);
}

/*
 * One turn of direction i. Returns 1 if it stopped at the budget while it
 * could go on, 0 if it waits for the kernel (or has ended), -1 on error.
 */
static int move(struct worker *w, struct conn *c, int i)
{
    struct side *src = &c->s[i], *dst = &c->s[1 - i];
    struct dir *d = &c->d[i];
    size_t moved = 0;
    ssize_t n;
    if (i == 0 && c->hs) { /* bytes the client sent past its request */
        if (!dst->wr)
            return 0;
        n = send(dst->fd, c->hs + c->hs_off, c->hs_len - c->hs_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN)
                return -1;
            dst->wr = 0;
            return 0;
        }
        c->hs_off += n;
        if (c->hs_off < c->hs_len)
            return 0;
        free(c->hs);
        c->hs = NULL;
    }
    for (;;) {
        if (d->n == 0) {
            if (d->eof) {
                put_pipe(w, d);
                if (!d->shut) {
                    d->shut = 1;
                    if (shutdown(dst->fd, SHUT_WR) < 0 && errno != ENOTCONN)
                        return -1;
                }
                return 0;
            }
            if (!src->rd) {
                put_pipe(w, d);
                return 0;
            }
            if (moved >= budget)
                return 1;
            if (d->p[0] < 0 && get_pipe(w, d->p) < 0)
                return -1;
            n = splice(src->fd, NULL, d->p[1], NULL, pipe_size,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0)
                d->n = n;
            else if (n == 0)
                d->eof = 1;
            else if (errno == EAGAIN)
                src->rd = 0; /* the pipe is empty: it is the socket */
            else if (errno != EINTR)
                return -1;
            continue;
        }
        if (!dst->wr)
            return 0; /* the pipe stays: bytes in flight */
        n = splice(d->p[0], NULL, dst->fd, NULL, d->n,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->n -= n;
            moved += n;
        } else if (n < 0 && errno == EAGAIN) {
            dst->wr = 0;
        } else if (n == 0 || errno != EINTR) {
            return -1;
        }
    }
}

static void relay(struct worker *w, struct conn *c)
{
    int again = 0;
    for (int i = 0; i < 2; i++) {
        int r = move(w, c, i);
        if (r < 0) {
            close_conn(w, c);
            return;
        }
        again |= r;
    }
    if (c->d[0].shut && c->d[1].shut)
        close_conn(w, c);
    else if (again)
        enqueue(w, c);
}

static void accept_some(struct worker *w)
{
    for (int k = 0; k < ACCEPTS_PER_WAKE; k++) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && w->spare >= 0) {
                /* Out of descriptors: refuse one rather than spin on it. */
                close(w->spare);
                fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0)
                    close(fd);
                w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            return; /* EAGAIN, or nothing better to do */
        }
        struct conn *c = calloc(1, sizeof *c);
        unsigned char *hs = malloc(HS_MAX);
        if (!c || !hs) {
            free(c);
            free(hs);
            close(fd);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->hs = hs;
        c->s[0].fd = fd;
        c->s[1].fd = -1;
        for (int i = 0; i < 2; i++)
            c->d[i].p[0] = c->d[i].p[1] = -1;
        if (watch(w, c, 0) < 0)
            close_conn(w, c);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(w->ep, ev, MAX_EVENTS, w->head ? 0 : -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            uint64_t u = ev[k].data.u64;
            if (u == 0) {
                accept_some(w);
                continue;
            }
            struct conn *c = (struct conn *)(uintptr_t)(u & ~(uint64_t)1);
            struct side *s = &c->s[u & 1];
            uint32_t e = ev[k].events;
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                s->rd = 1;
            if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                s->wr = 1;
            enqueue(w, c);
        }
        /* One round over the queue as it stands; requeued ones go next. */
        struct conn *q = w->head;
        w->head = w->tail = NULL;
        while (q) {
            struct conn *c = q;
            q = c->next;
            c->queued = 0;
            if (c->state == HS)
                handshake(w, c);
            else if (c->state == CONNECTING)
                connecting(w, c);
            else
                relay(w, c);
        }
    }
    return NULL;
}

static void worker_init(struct worker *w)
{
    int one = 1;
    memset(w, 0, sizeof *w);
    w->lfd = socket(listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w->lfd < 0)
        die("socket");
    if (setsockopt(w->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(w->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        die("setsockopt");
    if (bind(w->lfd, (struct sockaddr *)&listen_addr, listen_len) < 0)
        die("bind");
    if (listen(w->lfd, 4096) < 0)
        die("listen");
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) < 0)
        die("epoll_ctl");
    w->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void parse_listen(const char *arg)
{
    char host[128];
    const char *port = strrchr(arg, ':');
    size_t hl = port ? (size_t)(port - arg) : 0;
    if (!port || hl == 0 || hl >= sizeof host) {
        fprintf(stderr, "floor: -l wants ADDR:PORT, got %s\n", arg);
        exit(2);
    }
    memcpy(host, arg, hl);
    host[hl] = 0;
    if (host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = 0;
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM}, *ai;
    int e = getaddrinfo(host, port + 1, &hints, &ai);
    if (e) {
        fprintf(stderr, "floor: -l %s: %s\n", arg, gai_strerror(e));
        exit(2);
    }
    memcpy(&listen_addr, ai->ai_addr, ai->ai_addrlen);
    listen_len = ai->ai_addrlen;
    freeaddrinfo(ai);
}

int main(int argc, char **argv)
{
    const char *laddr = "127.0.0.1:1080";
    int threads = 1, o;
    while ((o = getopt(argc, argv, "l:t:b:p:h")) != -1) {
        switch (o) {
        case 'l': laddr = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'b': budget = strtoul(optarg, NULL, 0); break;
        case 'p': pipe_size = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-l ADDR:PORT] [-t THREADS] [-b BUDGET] [-p PIPE_BYTES]\n",
                    argv[0]);
            return 2;
        }
    }
    if (threads < 1 || budget < 1 || pipe_size < 4096) {
        fprintf(stderr, "floor: -t, -b must be positive, -p at least 4096\n");
        return 2;
    }
    parse_listen(laddr);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct worker *w = calloc(threads, sizeof *w);
    if (!w)
        die("calloc");
    for (int i = 0; i < threads; i++)
        worker_init(&w[i]); /* all listeners exist before any accepts */
    for (int i = 1; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, &w[i]) != 0)
            die("pthread_create");
    }
    worker_main(&w[0]);
    return 0;
}
