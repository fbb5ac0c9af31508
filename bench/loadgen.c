/*
 * loadgen: single-threaded epoll WebSocket load generator for bench/run.py.
 *
 * Why C: a Python client tops out far below what the servers under test can do, so it
 * would measure itself. This program pre-encodes masked frames once, batches writes with
 * writev and parses server frames incrementally (16 MiB messages are never buffered),
 * so one core of client drives the raw TCP ceiling much harder than any WebSocket server.
 *
 * Modes (all print one JSON object on stdout):
 *   echo    N connections, K messages in flight each, fixed size; latency per round trip.
 *   fanout  M room members + 1 sender: fixed-rate phase (CPU per delivery) and a
 *           closed-loop saturation phase (deliveries/s); lost/duplicate counts.
 *   idle    N idle connections: server RSS per connection, then echo probes.
 *           --chat: the connections are chat members instead (see below).
 * --raw skips the HTTP upgrade: the peer is a plain TCP echo and a "message" is complete
 * when as many bytes as the encoded frame came back (the TCP ceiling).
 *
 * --deflate OFFER sends OFFER as Sec-WebSocket-Extensions (permessage-deflate, RFC 7692) and
 * requires the server to accept it. Messages from the server with RSV1 are inflated with
 * zlib (their inflated size is what echo compares; fanout looks for its marker in the
 * inflated text). Echo and idle probes send their frame compressed once, up front, as a
 * stand-alone deflate stream with a 12-bit window: OFFER must carry
 * client_no_context_takeover and allow a client window of 12 bits. Counters of wire and
 * inflated bytes are printed with every result. --words makes the echo text pseudo-random
 * words (compresses about like prose) instead of the alphabet repeated.
 *
 * idle --prime: every connection echoes one message (--size) before the hold, so the
 * memory measured is that of connections that have been used, then left idle.
 *
 * Idle --path placeholders, replaced per connection (any other text is sent as is):
 *   {i}     the connection index, 0 .. N-1 (the 5 "new connection" probes get N .. N+4)
 *   {room}  i / --room-size (default 100), so connections fill room 0, then room 1, ...;
 *           the 5 probes count as 0 .. 4 here: they join room 0, a full room
 * Idle chat members (idle --chat), e.g. --path '/chat/idle-{room}?name=m{i}': frames the
 * server sends on its own (wsapp's hello/join/leave events, other members' messages) are
 * counted and discarded, never errors (without --chat an unasked-for message is an error).
 * Before RSS is read, the join storm must settle: no data frame received and server CPU
 * under 10 % of a core for 0.5 s (at most --settle-max s, "settled": 0 if it never did).
 * Probes send a text message "bench-probe-K." and time until a text message containing
 * that marker comes back on the same connection (the room broadcast includes the sender);
 * a new member's probe is connect + upgrade + that round trip.
 *
 * Build: gcc -O2 -o loadgen loadgen.c   (bench/run.py does this into bench/results/)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };
enum { MODE_ECHO, MODE_FANOUT, MODE_IDLE };

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---------- time and latency histogram (0.2% relative precision) ---------- */
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define HSUB 512
#define HSIZE (HSUB * 64 + 2 * HSUB)
typedef struct {
    uint64_t b[HSIZE];
    uint64_t n, max;
} hist_t;

static int hidx(uint64_t v) {
    if (v < 2 * HSUB) return (int)v;
    int e = 63 - __builtin_clzll(v) - 9;
    return HSUB * e + (int)(v >> e);
}
static uint64_t hval(int i) {
    if (i < 2 * HSUB) return (uint64_t)i;
    int e = i / HSUB - 1;
    uint64_t m = (uint64_t)(i - HSUB * e);
    return (m << e) + ((1ull << e) >> 1);
}
static void hadd(hist_t *h, uint64_t v) {
    h->b[hidx(v)]++;
    h->n++;
    if (v > h->max) h->max = v;
}
static double hpct_ms(const hist_t *h, double p) {
    if (!h->n) return -1;
    uint64_t want = (uint64_t)(p * (double)h->n + 0.999999), acc = 0;
    if (want < 1) want = 1;
    for (int i = 0; i < HSIZE; i++) {
        acc += h->b[i];
        if (acc >= want) return (double)hval(i) / 1e6;
    }
    return (double)h->max / 1e6;
}

/* ---------- options ---------- */
static struct {
    int mode;
    const char *host;
    int port;
    const char *path;       /* echo: request path; idle: the same with {i} {room}; fanout: prefix,
                               member name appended */
    int conns, inflight, raw, binary, src_spread, concurrency, chat, room_size;
    int per_send;           /* 1: each frame with its own send(), as a browser does; 0: writev batches */
    const char *deflate;    /* permessage-deflate offer, or NULL */
    int words;              /* echo text: pseudo-random words */
    int prime;              /* idle: every connection echoes one message before the hold */
    size_t size;
    double duration, warmup, hard_timeout, hold;
    long warmup_msgs, min_msgs, max_msgs;
    /* fanout */
    int members, window;
    double rate, sat_duration, settle_quiet, settle_max;
    const char *tmpl;
    const char *pids;
} opt = {
    .host = "127.0.0.1", .path = "/echo", .conns = 1, .inflight = 1, .concurrency = 200,
    .size = 64, .duration = 3, .warmup = 0.5, .hard_timeout = 120, .hold = 1.0,
    .members = 100, .window = 16, .rate = 100, .sat_duration = 3, .settle_quiet = 0.3,
    .settle_max = 30, .tmpl = "%s", .pids = "", .room_size = 100,
};

/* ---------- connection ---------- */
typedef struct {
    int fd, state, idx, want_out, is_sender;
    /* output: a small byte buffer (handshake, pongs, chat messages) flushed only at frame
       boundaries, then `fpending` copies of the shared pre-encoded frame */
    char *sbuf;
    size_t slen, soff, scap;
    uint64_t fpending;
    size_t foff;
    /* input */
    char hbuf[8192];
    size_t hlen;
    uint8_t hdr[14];
    int hhave, hneed, in_payload, fin, opcode, msg_opcode;
    uint64_t prem, msg_bytes, raw_rx;
    char *pbuf;
    size_t plen, pcap;
    /* echo bookkeeping */
    uint64_t *ring;
    int rhead, rcount;
    uint64_t done, done_total;
    uint64_t open_ns;
    /* idle --chat probe: marker number awaited (0: none) and when it came back */
    int probe_id;
    uint64_t probe_done_ns;
    /* permessage-deflate: negotiated, server keeps no context, its window; the inflater
       (allocated on the first compressed message; freed after each without context) */
    int pmd, srv_nct, srv_bits, msg_compressed;
    z_stream *inflater;
} conn_t;

static conn_t *C;
static int NC;
static int EP;
static char *FRAME;      /* pre-encoded masked client frame (echo/idle probes) */
static size_t FLEN;
static char REQ_HOST[128];
static struct sockaddr_in DST;

/* global counters */
static uint64_t g_connect_fail, g_closed, g_errors, g_bad_handshake, g_rx_bytes;
static uint64_t g_last_rx_ns;
static uint64_t g_chat_msgs, g_chat_bytes; /* idle --chat: data messages received, discarded */
/* data frames: payload bytes as received, and after inflating; compressed messages */
static uint64_t g_rx_payload, g_rx_app, g_rx_compressed, g_deflate_conns;
static char g_first_error[256];

static void set_error(const char *msg) {
    if (g_first_error[0]) return;
    snprintf(g_first_error, sizeof g_first_error, "%s", msg);
    for (char *p = g_first_error; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 32) *p = '\'';
}

static void sbuf_put(conn_t *c, const void *p, size_t n) {
    if (c->slen + n > c->scap) {
        size_t cap = c->scap ? c->scap : 256;
        while (cap < c->slen + n) cap *= 2;
        c->sbuf = realloc(c->sbuf, cap);
        c->scap = cap;
    }
    memcpy(c->sbuf + c->slen, p, n);
    c->slen += n;
}

/* Encode one masked client frame (RFC 6455 5.2). Returns header+payload length. */
static size_t encode_frame(char *out, int opcode, const uint8_t *payload, size_t n) {
    size_t h = 0;
    out[h++] = (char)(0x80 | opcode);
    if (n < 126) {
        out[h++] = (char)(0x80 | n);
    } else if (n < 65536) {
        out[h++] = (char)(0x80 | 126);
        out[h++] = (char)(n >> 8);
        out[h++] = (char)n;
    } else {
        out[h++] = (char)(0x80 | 127);
        for (int i = 7; i >= 0; i--) out[h++] = (char)(n >> (8 * i));
    }
    memcpy(out + h, MASK, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) out[h + i] = (char)(payload[i] ^ MASK[i & 3]);
    return h + n;
}

/* Pseudo-random lowercase words and spaces (xorshift: the same text every run). */
static void fill_words(uint8_t *out, size_t n) {
    static const char *w[] = {"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was",
                              "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from",
                              "at", "which", "but", "have", "an", "they", "you", "were", "her", "she",
                              "there", "been", "one", "all", "we", "their", "has", "would", "when",
                              "message", "server", "socket", "room", "compressed", "window", "frame"};
    uint64_t x = 88172645463325252ull;
    size_t i = 0;
    while (i < n) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const char *word = w[x % (sizeof w / sizeof *w)];
        for (const char *q = word; *q && i < n; q++) out[i++] = (uint8_t)*q;
        if (i < n) out[i++] = ' ';
    }
}

/* A masked client frame carrying `payload` compressed on its own (RSV1, RFC 7692 7.2.1):
   raw deflate with a 12-bit window, sync flush, the 4-octet tail removed. */
static size_t encode_compressed_frame(char *out, int opcode, const uint8_t *payload, size_t n) {
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, -12, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(3);
    size_t cap = deflateBound(&z, n) + 64;
    uint8_t *buf = malloc(cap);
    z.next_in = (Bytef *)payload;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in) exit(3);
    size_t clen = cap - z.avail_out - 4;
    deflateEnd(&z);
    size_t len = encode_frame(out, opcode, buf, clen);
    out[0] = (char)(out[0] | 0x40);
    free(buf);
    return len;
}

static void queue_small_frame(conn_t *c, int opcode, const void *p, size_t n) {
    char *tmp = malloc(n + 14);
    size_t len = encode_frame(tmp, opcode, p, n);
    sbuf_put(c, tmp, len);
    free(tmp);
}

static void set_events(conn_t *c, int want_out) {
    if (c->fd < 0 || c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = (uint32_t)c->idx};
    epoll_ctl(EP, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static int g_next_connect, g_pending_connects;

static void conn_close(conn_t *c, int unexpected) {
    if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) g_pending_connects--;
    if (c->fd >= 0) {
        epoll_ctl(EP, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (unexpected && c->state != ST_CLOSED) g_closed++;
    c->state = ST_CLOSED;
}

/* Write as much pending output as the socket takes, small buffer first at boundaries. */
static void flush_out(conn_t *c) {
    while (c->state == ST_HANDSHAKE || c->state == ST_OPEN) {
        ssize_t w;
        if (c->foff == 0 && c->soff < c->slen) {
            w = send(c->fd, c->sbuf + c->soff, c->slen - c->soff, MSG_NOSIGNAL);
            if (w > 0) {
                c->soff += (size_t)w;
                if (c->soff == c->slen) c->soff = c->slen = 0;
                continue;
            }
        } else if (c->fpending > 0 && c->state == ST_OPEN) {
            struct iovec iov[64];
            int n = 0;
            iov[n].iov_base = FRAME + c->foff;
            iov[n++].iov_len = FLEN - c->foff;
            while (!opt.per_send && (uint64_t)n < c->fpending && n < 64 && FLEN < 65536) {
                iov[n].iov_base = FRAME;
                iov[n++].iov_len = FLEN;
            }
            w = writev(c->fd, iov, n);
            if (w > 0) {
                size_t left = (size_t)w;
                size_t first = FLEN - c->foff;
                if (left >= first) {
                    left -= first;
                    c->foff = 0;
                    c->fpending--;
                    c->fpending -= left / FLEN;
                    c->foff = left % FLEN;
                } else {
                    c->foff += left;
                }
                continue;
            }
        } else {
            set_events(c, 0);
            return;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, 1);
            return;
        }
        set_error(w < 0 ? strerror(errno) : "write returned 0");
        conn_close(c, 1);
        return;
    }
}

/* ---------- mode state ---------- */
static hist_t H;
static int g_measuring, g_stop_sending, g_finished, g_timed_out;
static uint64_t g_t0, g_all_open_ns, g_measure_start, g_measure_end, g_done, g_done_any;
static struct rusage g_ru0, g_ru1;
static double g_cpu0, g_cpu1;
static int g_nopen;

/* fanout state */
static uint64_t *F_sent_ns;      /* per seq */
static uint32_t *F_count;        /* deliveries per seq */
static uint8_t *F_seen;          /* members x maxseq bitmap */
static uint64_t F_maxseq = 200000, F_next_seq, F_complete_prefix, F_deliveries, F_dups;

/* Server CPU seconds (utime+stime over all listed pids) from /proc/PID/stat. */
static double server_cpu(void) {
    double total = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", opt.pids);
    long hz = sysconf(_SC_CLK_TCK);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char path[64], line[2048];
        snprintf(path, sizeof path, "/proc/%s/stat", tok);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = 0;
        char *p = strrchr(line, ')');
        if (!p) continue;
        unsigned long ut = 0, st = 0;
        /* after ") " fields start at 3 (state); utime is 14, stime 15 */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            total += (double)(ut + st) / (double)hz;
    }
    return total;
}

static long server_rss_kb(void) {
    long total = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", opt.pids);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", tok);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmRSS:", 6)) total += atol(line + 6);
        fclose(f);
    }
    return total;
}

static double ru_cpu(const struct rusage *r) {
    return (double)r->ru_utime.tv_sec + r->ru_utime.tv_usec / 1e6 + (double)r->ru_stime.tv_sec +
           r->ru_stime.tv_usec / 1e6;
}

static uint64_t g_rx_measure0, g_rx_measure1; /* g_rx_bytes at the window's start and end */

static void measure_begin(uint64_t t) {
    g_rx_measure0 = g_rx_bytes;
    memset(&H, 0, sizeof H);
    for (int i = 0; i < NC; i++) C[i].done = 0;
    g_done = 0;
    g_measuring = 1;
    g_measure_start = t;
    getrusage(RUSAGE_SELF, &g_ru0);
    g_cpu0 = server_cpu();
}

static uint64_t g_unanswered, g_unanswered_1s;

/* Echo messages still unanswered when the window closes enter the histogram with their
   age so far: a connection the server starves must show up in p99, not vanish from it. */
static void add_censored(uint64_t t) {
    if (opt.mode != MODE_ECHO) return;
    for (int i = 0; i < NC; i++) {
        conn_t *c = &C[i];
        if (c->state != ST_OPEN) continue;
        for (int k = 0; k < c->rcount; k++) {
            uint64_t sent = c->ring[(c->rhead + k) % opt.inflight];
            if (sent >= t) continue;
            hadd(&H, t - sent);
            g_unanswered++;
            if (t - sent > 1000000000ull) g_unanswered_1s++;
        }
    }
}

static void measure_end(uint64_t t) {
    if (g_measuring) add_censored(t);
    g_measuring = 0;
    g_measure_end = t;
    g_rx_measure1 = g_rx_bytes;
    getrusage(RUSAGE_SELF, &g_ru1);
    g_cpu1 = server_cpu();
}

/* ---------- echo mode ---------- */
static void echo_send_one(conn_t *c, uint64_t t) {
    c->ring[(c->rhead + c->rcount) % opt.inflight] = t;
    c->rcount++;
    c->fpending++;
}

static void echo_complete(conn_t *c, uint64_t nbytes, uint64_t t) {
    if (!opt.raw && nbytes != opt.size) {
        g_errors++;
        set_error("echoed message has the wrong length");
    }
    if (c->rcount == 0) {
        g_errors++;
        set_error("unexpected message");
        return;
    }
    uint64_t sent = c->ring[c->rhead];
    c->rhead = (c->rhead + 1) % opt.inflight;
    c->rcount--;
    c->done_total++;
    g_done_any++;
    if (!g_measuring && !g_measure_end && g_all_open_ns &&
        t >= g_all_open_ns + (uint64_t)(opt.warmup * 1e9) && (long)g_done_any > opt.warmup_msgs) {
        measure_begin(t);
    } else if (g_measuring) {
        hadd(&H, t - sent);
        c->done++;
        g_done++;
        if ((opt.max_msgs && (long)g_done >= opt.max_msgs) ||
            (t >= g_measure_start + (uint64_t)(opt.duration * 1e9) && (long)g_done >= opt.min_msgs)) {
            measure_end(t);
            g_stop_sending = 1;
            g_finished = 1;
        }
    }
    if (!g_stop_sending) echo_send_one(c, t);
}

/* ---------- fanout mode ---------- */
static int fanout_members_done(uint64_t seq) { return F_count[seq] >= (uint32_t)opt.members; }

static void fanout_message(conn_t *c, const char *p, size_t n, uint64_t t) {
    if (c->is_sender) return;
    const char *m = memmem(p, n, "bench:", 6);
    if (!m) return;
    uint64_t seq = strtoull(m + 6, NULL, 10);
    if (seq >= F_next_seq) {
        g_errors++;
        set_error("delivery of a message never sent");
        return;
    }
    uint64_t bit = (uint64_t)c->idx * F_maxseq + seq;
    if (F_seen[bit >> 3] & (1u << (bit & 7))) {
        F_dups++;
        return;
    }
    F_seen[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    F_count[seq]++;
    F_deliveries++;
    if (g_measuring) hadd(&H, t - F_sent_ns[seq]);
    while (F_complete_prefix < F_next_seq && fanout_members_done(F_complete_prefix)) F_complete_prefix++;
}

static void fanout_send(uint64_t t) {
    if (F_next_seq >= F_maxseq) return;
    conn_t *s = &C[NC - 1];
    if (s->state != ST_OPEN) return;
    char marker[64], text[512];
    snprintf(marker, sizeof marker, "bench:%llu:", (unsigned long long)F_next_seq);
    snprintf(text, sizeof text, opt.tmpl, marker);
    F_sent_ns[F_next_seq++] = t;
    queue_small_frame(s, 1, text, strlen(text));
    flush_out(s);
}

/* ---------- idle chat members ---------- */
static int probe_marker(int id, char *out, size_t n) { return snprintf(out, n, "bench-probe-%d.", id); }

/* Any data message on a chat member is counted and dropped; a pending probe completes when
   its marker comes back in a text message. */
static void chat_message(conn_t *c, uint64_t t) {
    g_chat_msgs++;
    g_chat_bytes += c->msg_bytes;
    if (!c->probe_id || c->msg_opcode != 1) return;
    char m[48];
    int n = probe_marker(c->probe_id, m, sizeof m);
    if (c->plen >= (size_t)n && memmem(c->pbuf, c->plen, m, (size_t)n)) {
        c->probe_id = 0;
        c->probe_done_ns = t;
    }
}

/* ---------- frame parser ---------- */
static void keep_bytes(conn_t *c, const void *p, size_t take) {
    if (c->plen + take > c->pcap) {
        c->pcap = (c->plen + take) * 2;
        c->pbuf = realloc(c->pbuf, c->pcap);
    }
    memcpy(c->pbuf + c->plen, p, take);
    c->plen += take;
}

/* Inflate a piece of a compressed message (RFC 7692 7.2.2), counting what comes out and
   keeping it only if asked; -1 (connection closed) if it does not inflate. */
static int inflate_into(conn_t *c, const uint8_t *p, size_t n, int keep) {
    static uint8_t out[262144];
    if (!c->inflater) {
        c->inflater = calloc(1, sizeof(z_stream));
        if (inflateInit2(c->inflater, -c->srv_bits) != Z_OK) {
            set_error("inflateInit2 failed");
            conn_close(c, 1);
            return -1;
        }
    }
    z_stream *z = c->inflater;
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)n;
    do {
        z->next_out = out;
        z->avail_out = sizeof out;
        int rc = inflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
            g_errors++;
            set_error("server's compressed message does not inflate");
            conn_close(c, 1);
            return -1;
        }
        size_t got = sizeof out - z->avail_out;
        c->msg_bytes += got;
        g_rx_app += got;
        if (keep && got) keep_bytes(c, out, got);
        if (rc == Z_BUF_ERROR || rc == Z_STREAM_END) break;
    } while (z->avail_in > 0 || z->avail_out == 0);
    return 0;
}

/* End of a compressed message: the 4 octets the sender removed, then drop or keep state. */
static int inflate_end_message(conn_t *c, int keep) {
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (inflate_into(c, tail, 4, keep) < 0) return -1;
    if (c->srv_nct && c->inflater) {
        inflateEnd(c->inflater);
        free(c->inflater);
        c->inflater = NULL;
    }
    return 0;
}

static void on_message(conn_t *c, uint64_t t) {
    if (opt.mode == MODE_IDLE && opt.chat) chat_message(c, t);
    else if (opt.mode == MODE_ECHO || opt.mode == MODE_IDLE) echo_complete(c, c->msg_bytes, t);
    else fanout_message(c, c->pbuf, c->plen, t);
}

static void frame_end(conn_t *c, uint64_t t) {
    if (c->opcode >= 8) {
        if (c->opcode == 9) queue_small_frame(c, 10, c->pbuf, c->plen);
        if (c->opcode == 8) {
            char msg[160];
            int code = c->plen >= 2 ? ((uint8_t)c->pbuf[0] << 8) | (uint8_t)c->pbuf[1] : 1005;
            int rlen = c->plen > 2 ? (int)(c->plen - 2) : 0;
            snprintf(msg, sizeof msg, "server sent close %d %.*s", code, rlen > 100 ? 100 : rlen,
                     c->plen > 2 ? c->pbuf + 2 : "");
            set_error(msg);
            uint8_t reply[2] = {0x03, 0xe8};
            queue_small_frame(c, 8, reply, 2);
            flush_out(c);
            conn_close(c, 1);
            return;
        }
        c->plen = 0;
        return;
    }
    if (c->fin) {
        if (c->msg_compressed) {
            int keep = opt.mode == MODE_FANOUT || c->probe_id;
            if (inflate_end_message(c, keep) < 0) return;
            c->msg_compressed = 0;
        }
        on_message(c, t);
        c->plen = 0;
        c->msg_bytes = 0;
    }
}

static void parse_frames(conn_t *c, const uint8_t *p, size_t n, uint64_t t) {
    /* payload bytes are kept only where they are looked at: fanout, and a chat probe */
    int keep_data = opt.mode == MODE_FANOUT || c->probe_id;
    while (n > 0 && c->state == ST_OPEN) {
        if (!c->in_payload) {
            if (c->hneed == 0) c->hneed = 2;
            while (n > 0 && c->hhave < c->hneed) {
                c->hdr[c->hhave++] = *p++;
                n--;
                if (c->hhave == 2) {
                    int l7 = c->hdr[1] & 0x7f;
                    c->hneed = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->hdr[1] & 0x80) ? 4 : 0);
                }
            }
            if (c->hhave < c->hneed) return;
            c->fin = c->hdr[0] >> 7;
            c->opcode = c->hdr[0] & 0x0f;
            int l7 = c->hdr[1] & 0x7f;
            uint64_t len = (uint64_t)l7;
            if (l7 == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            if (l7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
            }
            c->prem = len;
            c->hhave = c->hneed = 0;
            c->in_payload = 1;
            int rsv1 = (c->hdr[0] & 0x40) != 0;
            if ((c->hdr[0] & 0x30) || (rsv1 && (!c->pmd || (c->opcode != 1 && c->opcode != 2)))) {
                g_errors++;
                set_error("server set RSV bits where not allowed");
                conn_close(c, 1);
                return;
            }
            if (c->opcode == 1 || c->opcode == 2) {
                c->msg_opcode = c->opcode;
                c->msg_compressed = rsv1;
                if (rsv1) g_rx_compressed++;
            }
        }
        size_t take = c->prem < n ? (size_t)c->prem : n;
        if (c->opcode < 8) g_rx_payload += take;
        if (c->opcode < 8 && c->msg_compressed) {
            if (inflate_into(c, p, take, keep_data) < 0) return;
        } else {
            if (c->opcode >= 8 || keep_data) keep_bytes(c, p, take);
            if (c->opcode < 8) c->msg_bytes += take;
        }
        c->prem -= take;
        p += take;
        n -= take;
        if (c->prem == 0) {
            c->in_payload = 0;
            frame_end(c, t);
        }
    }
}

static void on_open(conn_t *c, uint64_t t) {
    g_pending_connects--;
    c->state = ST_OPEN;
    c->open_ns = t;
    g_nopen++;
}

/* The server's Sec-WebSocket-Extensions: permessage-deflate must be there, and allow the
   12-bit client window our pre-compressed frame uses. */
static int deflate_answer(conn_t *c, char *end) {
    char saved = *end;
    *end = 0;
    char *h = strcasestr(c->hbuf, "\r\nsec-websocket-extensions:");
    char *eol = h ? strstr(h + 2, "\r\n") : NULL;
    if (eol) *eol = 0;
    int ok = h && strstr(h, "permessage-deflate");
    if (ok) {
        c->pmd = 1;
        c->srv_nct = strstr(h, "server_no_context_takeover") != NULL;
        char *b = strstr(h, "server_max_window_bits=");
        c->srv_bits = b ? atoi(b + 23) : 15;
        char *cb = strstr(h, "client_max_window_bits=");
        if (cb && atoi(cb + 23) < 12) ok = 0;
        g_deflate_conns += ok;
    }
    if (eol) *eol = '\r';
    *end = saved;
    if (!ok) {
        g_bad_handshake++;
        set_error(c->pmd ? "server asked for a client window under 12 bits"
                         : "server declined permessage-deflate");
        return -1;
    }
    return 0;
}

static void on_handshake_bytes(conn_t *c, const char *p, size_t n, uint64_t t) {
    size_t room = sizeof c->hbuf - 1 - c->hlen;
    size_t take = n < room ? n : room;
    memcpy(c->hbuf + c->hlen, p, take);
    c->hlen += take;
    c->hbuf[c->hlen] = 0;
    char *end = strstr(c->hbuf, "\r\n\r\n");
    if (!end) {
        if (c->hlen >= sizeof c->hbuf - 1) goto bad;
        return;
    }
    if (strncmp(c->hbuf, "HTTP/1.1 101", 12) != 0) goto bad;
    if (opt.deflate && deflate_answer(c, end) < 0) {
        conn_close(c, 0);
        return;
    }
    size_t hdr_len = (size_t)(end + 4 - c->hbuf);
    size_t consumed_before = c->hlen - take; /* bytes of hbuf from earlier reads */
    on_open(c, t);
    size_t used_from_p = hdr_len - consumed_before;
    parse_frames(c, (const uint8_t *)p + used_from_p, n - used_from_p, t);
    return;
bad:
    g_bad_handshake++;
    {
        char msg[200];
        char *nl = strstr(c->hbuf, "\r\n");
        if (nl) *nl = 0;
        snprintf(msg, sizeof msg, "handshake refused: %.150s", c->hbuf);
        set_error(msg);
    }
    conn_close(c, 0);
}

static void on_readable(conn_t *c) {
    static uint8_t buf[262144];
    for (int rounds = 0; rounds < 4 && c->fd >= 0; rounds++) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (r <= 0) {
            if (r < 0) set_error(strerror(errno));
            else set_error("peer closed the connection");
            conn_close(c, 1);
            return;
        }
        uint64_t t = now_ns();
        g_rx_bytes += (uint64_t)r;
        g_last_rx_ns = t;
        if (c->state == ST_HANDSHAKE) {
            on_handshake_bytes(c, (const char *)buf, (size_t)r, t);
        } else if (opt.raw) {
            c->raw_rx += (uint64_t)r;
            while (c->raw_rx >= FLEN) {
                c->raw_rx -= FLEN;
                echo_complete(c, opt.size, t);
            }
        } else {
            parse_frames(c, buf, (size_t)r, t);
        }
        if ((size_t)r < sizeof buf) break;
    }
    if (c->fd >= 0) flush_out(c);
}

/* ---------- connecting ---------- */

static void start_connect(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        g_connect_fail++;
        set_error(strerror(errno));
        c->state = ST_CLOSED;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.src_spread) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        /* 127.0.<1+idx/20000>.<1+...>: beyond ~28k per source address the ports run out */
        uint32_t a = (127u << 24) | ((uint32_t)(1 + c->idx / 20000) << 8) | 1u;
        src.sin_addr.s_addr = htonl(a);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        bind(fd, (struct sockaddr *)&src, sizeof src);
    }
    c->fd = fd;
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)c->idx};
    epoll_ctl(EP, EPOLL_CTL_ADD, fd, &ev);
    int r = connect(fd, (struct sockaddr *)&DST, sizeof DST);
    if (r < 0 && errno != EINPROGRESS) {
        g_connect_fail++;
        set_error(strerror(errno));
        conn_close(c, 0);
        return;
    }
    c->state = ST_CONNECTING;
    g_pending_connects++;
}

static void fill_connects(void) {
    while (g_next_connect < NC && g_pending_connects < opt.concurrency) {
        conn_t *c = &C[g_next_connect];
        /* fanout: the sender (last) connects only once every member is in */
        if (opt.mode == MODE_FANOUT && g_next_connect == NC - 1 && g_pending_connects > 0) return;
        g_next_connect++;
        start_connect(c);
    }
}

/* idle: --path with {i} and {room} replaced (see the top of this file) */
static void expand_path(int idx, char *out, size_t n) {
    int slot = idx < opt.conns ? idx : idx - opt.conns; /* the new-member probes go to room 0 */
    size_t o = 0;
    for (const char *p = opt.path; *p && o + 1 < n;) {
        int w = 0;
        if (!strncmp(p, "{i}", 3)) {
            w = snprintf(out + o, n - o, "%d", idx);
            p += 3;
        } else if (!strncmp(p, "{room}", 6)) {
            w = snprintf(out + o, n - o, "%d", slot / opt.room_size);
            p += 6;
        } else {
            out[o++] = *p++;
        }
        o += w > 0 ? (size_t)w : 0;
        if (o >= n) o = n - 1;
    }
    out[o] = 0;
}

static void member_path(conn_t *c, char *out, size_t n) {
    if (opt.mode == MODE_FANOUT) {
        if (c->is_sender) snprintf(out, n, "%ssender", opt.path);
        else snprintf(out, n, "%sm%d", opt.path, c->idx);
    } else if (opt.mode == MODE_IDLE) {
        expand_path(c->idx, out, n);
    } else {
        snprintf(out, n, "%s", opt.path);
    }
}

static void on_writable(conn_t *c, uint64_t t) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            g_connect_fail++;
            set_error(strerror(err));
            conn_close(c, 0);
            return;
        }
        if (opt.raw) {
            on_open(c, t);
        } else {
            char path[512], req[1024];
            member_path(c, path, sizeof path);
            char ext[300] = "";
            if (opt.deflate) snprintf(ext, sizeof ext, "Sec-WebSocket-Extensions: %s\r\n", opt.deflate);
            int n = snprintf(req, sizeof req,
                             "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\nUser-Agent: wsapp-bench-loadgen\r\n%s\r\n",
                             path, REQ_HOST, ext);
            c->state = ST_HANDSHAKE;
            sbuf_put(c, req, (size_t)n);
        }
    }
    flush_out(c);
}

/* ---------- main loop ---------- */
static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(EP, evs, 512, timeout_ms);
    uint64_t t = now_ns();
    for (int i = 0; i < n; i++) {
        conn_t *c = &C[evs[i].data.u32];
        if (c->fd < 0) continue;
        if (evs[i].events & EPOLLOUT) on_writable(c, t);
        if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
    }
}

static int count_open(void) {
    int n = 0;
    for (int i = 0; i < NC; i++) n += C[i].state == ST_OPEN;
    return n;
}

/* Connect everything (bounded concurrency); return seconds taken. */
static double connect_all(double limit_s) {
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(limit_s * 1e9);
    while (now_ns() < deadline) {
        fill_connects();
        if (g_next_connect >= NC && g_pending_connects == 0) break;
        poll_once(5);
    }
    return (double)(now_ns() - t0) / 1e9;
}

static void wait_quiet(double quiet_s, double max_s) {
    uint64_t t0 = now_ns(), q = (uint64_t)(quiet_s * 1e9);
    g_last_rx_ns = t0;
    while (now_ns() - t0 < (uint64_t)(max_s * 1e9)) {
        poll_once(10);
        if (now_ns() - g_last_rx_ns >= q) return;
    }
}

static void print_common(void) {
    printf("\"connections\": %d, \"open_at_end\": %d, \"connect_failures\": %llu, "
           "\"bad_handshakes\": %llu, \"closed_by_peer\": %llu, \"errors\": %llu, "
           "\"first_error\": \"%s\"",
           NC, count_open(), (unsigned long long)g_connect_fail, (unsigned long long)g_bad_handshake,
           (unsigned long long)g_closed, (unsigned long long)g_errors, g_first_error);
    printf(", \"deflate\": %d, \"deflate_conns\": %llu, \"rx_bytes\": %llu, \"rx_payload_bytes\": %llu, "
           "\"rx_inflated_bytes\": %llu, \"rx_compressed_msgs\": %llu",
           opt.deflate != NULL, (unsigned long long)g_deflate_conns, (unsigned long long)g_rx_bytes,
           (unsigned long long)g_rx_payload, (unsigned long long)g_rx_app,
           (unsigned long long)g_rx_compressed);
}

static void print_latency(const char *prefix) {
    printf("\"%sp50_ms\": %.4f, \"%sp99_ms\": %.4f, \"%smax_ms\": %.4f, \"%ssamples\": %llu", prefix,
           hpct_ms(&H, 0.5), prefix, hpct_ms(&H, 0.99), prefix, (double)H.max / 1e6, prefix,
           (unsigned long long)H.n);
}

static int run_echo(void) {
    double setup_s = connect_all(opt.hard_timeout);
    g_all_open_ns = now_ns();
    /* traffic starts once every connection is up, so setup never competes with echoes */
    for (int i = 0; i < NC; i++) {
        if (C[i].state != ST_OPEN) continue;
        for (int k = 0; k < opt.inflight; k++) echo_send_one(&C[i], g_all_open_ns);
        flush_out(&C[i]);
    }
    uint64_t hard = g_all_open_ns + (uint64_t)(opt.hard_timeout * 1e9);
    if (count_open() == 0) g_finished = 1;
    while (!g_finished) {
        poll_once(5);
        uint64_t t = now_ns();
        if (g_measuring && t >= g_measure_start + (uint64_t)(opt.duration * 1e9) && (long)g_done >= opt.min_msgs) {
            measure_end(t);
            g_stop_sending = 1;
            g_finished = 1;
        }
        if (t >= hard || count_open() == 0) {
            g_timed_out = t >= hard;
            if (g_measuring) measure_end(t);
            g_finished = 1;
        }
    }
    double el = g_measure_end > g_measure_start ? (double)(g_measure_end - g_measure_start) / 1e9 : 0;
    uint64_t mn = UINT64_MAX, mx = 0;
    for (int i = 0; i < NC; i++) {
        if (C[i].done < mn) mn = C[i].done;
        if (C[i].done > mx) mx = C[i].done;
    }
    double client_cpu = ru_cpu(&g_ru1) - ru_cpu(&g_ru0);
    printf("{\"mode\": \"echo\", \"raw\": %d, \"size\": %zu, \"binary\": %d, \"inflight\": %d, ", opt.raw,
           opt.size, opt.binary, opt.inflight);
    print_common();
    printf(", \"setup_s\": %.3f, \"elapsed_s\": %.4f, \"messages\": %llu, \"msgs_per_s\": %.1f, "
           "\"mb_per_s\": %.3f, \"s_per_msg\": %.6f, \"min_per_conn\": %llu, \"max_per_conn\": %llu, "
           "\"client_cpu_util\": %.3f, \"server_cpu_s\": %.3f, \"timed_out\": %d, "
           "\"unanswered_at_end\": %llu, \"unanswered_over_1s\": %llu, ",
           setup_s, el, (unsigned long long)g_done, el > 0 ? g_done / el : 0,
           el > 0 ? (double)g_done * (double)opt.size / el / 1e6 : 0, g_done ? el / (double)g_done : 0,
           (unsigned long long)(mn == UINT64_MAX ? 0 : mn), (unsigned long long)mx,
           el > 0 ? client_cpu / el : 0, g_cpu1 - g_cpu0, g_timed_out, (unsigned long long)g_unanswered,
           (unsigned long long)g_unanswered_1s);
    print_latency("");
    printf("}\n");
    return 0;
}

/* One echo round trip on connection c (already open), bounded by timeout; ms or -1. */
static double probe_echo(conn_t *c, double timeout_s) {
    if (c->state != ST_OPEN) return -1;
    uint64_t before = c->done_total, t0 = now_ns();
    g_stop_sending = 1;
    echo_send_one(c, t0);
    flush_out(c);
    while (c->done_total == before && c->state == ST_OPEN && now_ns() - t0 < (uint64_t)(timeout_s * 1e9))
        poll_once(5);
    return c->done_total > before ? (double)(now_ns() - t0) / 1e6 : -1;
}

/* One chat round trip on member c: send a marked message, wait for it to come back. */
static double probe_chat(conn_t *c, double timeout_s) {
    static int seq;
    if (c->state != ST_OPEN) return -1;
    char text[48];
    c->probe_id = ++seq;
    int n = probe_marker(c->probe_id, text, sizeof text);
    uint64_t t0 = now_ns();
    queue_small_frame(c, 1, text, (size_t)n);
    flush_out(c);
    while (c->probe_id && c->state == ST_OPEN && now_ns() - t0 < (uint64_t)(timeout_s * 1e9)) poll_once(5);
    double ms = c->probe_id ? -1 : (double)(c->probe_done_ns - t0) / 1e6;
    c->probe_id = 0;
    return ms;
}

static double probe(conn_t *c, double timeout_s) {
    return opt.chat ? probe_chat(c, timeout_s) : probe_echo(c, timeout_s);
}

/* Chat join storm: wait until no data message arrived and the server used under 10 % of a
   core for a whole window of quiet_s (pings and pongs do not count as traffic). */
static double wait_settled(double quiet_s, double max_s, int *settled) {
    uint64_t t0 = now_ns(), win = (uint64_t)(quiet_s * 1e9), ws = t0;
    uint64_t msgs = g_chat_msgs;
    double cpu = server_cpu();
    *settled = 0;
    while (now_ns() - t0 < (uint64_t)(max_s * 1e9)) {
        poll_once(10);
        uint64_t t = now_ns();
        if (t - ws < win) continue;
        double cpu_now = server_cpu();
        if (g_chat_msgs == msgs && cpu_now - cpu < 0.1 * (double)(t - ws) / 1e9) {
            *settled = 1;
            break;
        }
        ws = t;
        msgs = g_chat_msgs;
        cpu = cpu_now;
    }
    return (double)(now_ns() - t0) / 1e9;
}

#define NEW_PROBES 5

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* --prime: one echo on every open connection (200 in flight at most), so each has sent and
   received a message (with --deflate: compressed both ways) before it goes idle. */
static uint64_t g_primed;

static double prime_all(double limit_s) {
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(limit_s * 1e9), done0 = g_done_any;
    uint64_t sent = 0;
    int next = 0;
    g_stop_sending = 1;
    while (now_ns() < deadline) {
        while (next < NC && sent - (g_done_any - done0) < (uint64_t)opt.concurrency) {
            conn_t *c = &C[next++];
            if (c->state != ST_OPEN) continue;
            echo_send_one(c, now_ns());
            flush_out(c);
            sent++;
        }
        if (next >= NC && g_done_any - done0 >= sent) break;
        poll_once(5);
    }
    g_primed = g_done_any - done0;
    return (double)(now_ns() - t0) / 1e9;
}

static int run_idle(void) {
    long rss0 = server_rss_kb();
    double cpu0 = server_cpu();
    int total = NC; /* the last NEW_PROBES slots are kept for the "new connection" probes */
    NC = total - NEW_PROBES;
    double setup_s = connect_all(opt.hard_timeout);
    int opened = count_open();
    double prime_s = opt.prime ? prime_all(opt.hard_timeout) : 0;
    int settled = 1;
    uint64_t t_settle = now_ns();
    if (opt.chat) wait_settled(0.5, opt.settle_max, &settled);
    else wait_quiet(0.5, 5);
    double settle_s = (double)(now_ns() - t_settle) / 1e9;
    /* hold: connections sit idle; the server must keep them all */
    uint64_t t_hold = now_ns();
    while (now_ns() - t_hold < (uint64_t)(opt.hold * 1e9)) poll_once(20);
    long rss1 = server_rss_kb();
    double cpu1 = server_cpu();
    int still_open = count_open();
    uint64_t msgs_settled = g_chat_msgs;
    double idle_ms = probe(&C[0], 5);
    double idle2_ms = NC > 1 ? probe(&C[NC / 2], 5) : -1;
    /* brand-new connections, one after the other: connect + upgrade + one echo each */
    double connect_ms[NEW_PROBES], total_ms[NEW_PROBES];
    int ok = 0;
    for (int k = 0; k < NEW_PROBES; k++) {
        NC = total - NEW_PROBES + k + 1;
        uint64_t tn = now_ns();
        connect_all(10);
        double cms = (double)(now_ns() - tn) / 1e6;
        if (probe(&C[NC - 1], 5) >= 0) {
            connect_ms[ok] = cms;
            total_ms[ok++] = (double)(now_ns() - tn) / 1e6;
        }
    }
    qsort(connect_ms, (size_t)ok, sizeof(double), cmp_double);
    qsort(total_ms, (size_t)ok, sizeof(double), cmp_double);
    double new_connect_ms = ok ? connect_ms[ok / 2] : -1;
    double new_total_ms = ok ? total_ms[ok / 2] : -1;
    double new_echo_ms = ok ? total_ms[ok - 1] : -1; /* worst of the probes */
    const char *pk = opt.chat ? "msg" : "echo"; /* what the probes on idle connections time */
    printf("{\"mode\": \"idle\", \"raw\": %d, \"chat\": %d, ", opt.raw, opt.chat);
    print_common();
    printf(", \"primed\": %llu, \"prime_s\": %.3f", (unsigned long long)g_primed, prime_s);
    printf(", \"idle_connections\": %d, \"opened\": %d, \"still_open_after_hold\": %d, "
           "\"setup_s\": %.3f, \"connects_per_s\": %.1f, \"settle_s\": %.3f, \"settled\": %d, "
           "\"hold_s\": %.1f, \"server_rss_kb_before\": %ld, "
           "\"server_rss_kb_after\": %ld, \"rss_kb_per_conn\": %.3f, \"server_cpu_s_setup_hold\": %.3f, "
           "\"idle_%s_ms\": %.3f, \"idle_%s2_ms\": %.3f, \"new_conn_connect_ms\": %.3f, "
           "\"new_conn_worst_total_ms\": %.3f, \"new_conn_total_ms\": %.3f, \"new_conn_probes\": %d",
           total - NEW_PROBES, opened, still_open, setup_s, setup_s > 0 ? opened / setup_s : 0, settle_s, settled,
           opt.hold, rss0, rss1, opened ? (double)(rss1 - rss0) / opened : 0, cpu1 - cpu0, pk, idle_ms, pk,
           idle2_ms, new_connect_ms, new_echo_ms, new_total_ms, ok);
    if (opt.chat)
        printf(", \"room_size\": %d, \"rooms\": %d, \"messages_until_settled\": %llu, "
               "\"messages_received\": %llu, \"message_bytes_received\": %llu",
               opt.room_size, (total - NEW_PROBES + opt.room_size - 1) / opt.room_size,
               (unsigned long long)msgs_settled, (unsigned long long)g_chat_msgs, (unsigned long long)g_chat_bytes);
    printf("}\n");
    return 0;
}

static void fanout_phase_report(const char *name, uint64_t first_seq, uint64_t last_seq, uint64_t deliveries,
                                double el, double cpu_s, uint64_t rx, int comma) {
    uint64_t expected = (last_seq - first_seq) * (uint64_t)opt.members, got = 0;
    for (uint64_t s = first_seq; s < last_seq; s++) got += F_count[s];
    printf("\"%s\": {\"messages\": %llu, \"deliveries\": %llu, \"expected\": %llu, \"lost\": %llu, "
           "\"elapsed_s\": %.4f, \"deliveries_per_s\": %.1f, \"server_cpu_s\": %.3f, "
           "\"cpu_us_per_delivery\": %.3f, ",
           name, (unsigned long long)(last_seq - first_seq), (unsigned long long)deliveries,
           (unsigned long long)expected, (unsigned long long)(expected - got), el,
           el > 0 ? (double)deliveries / el : 0, cpu_s, got ? cpu_s * 1e6 / (double)got : 0);
    printf("\"rx_bytes\": %llu, \"rx_bytes_per_delivery\": %.2f, ", (unsigned long long)rx,
           deliveries ? (double)rx / (double)deliveries : 0);
    print_latency("");
    printf("}%s", comma ? ", " : "");
}

static void drain_fanout(double limit_s) {
    uint64_t t0 = now_ns(), last = F_deliveries, tl = t0;
    while (F_complete_prefix < F_next_seq && now_ns() - t0 < (uint64_t)(limit_s * 1e9)) {
        poll_once(5);
        if (F_deliveries != last) {
            last = F_deliveries;
            tl = now_ns();
        } else if (now_ns() - tl > 2000000000ull) {
            break; /* no progress for 2 s: the rest is lost */
        }
    }
}

static int run_fanout(void) {
    F_sent_ns = calloc(F_maxseq, sizeof *F_sent_ns);
    F_count = calloc(F_maxseq, sizeof *F_count);
    F_seen = calloc((size_t)opt.members * F_maxseq / 8 + 1, 1);
    double setup_s = connect_all(opt.hard_timeout);
    int members_open = 0;
    for (int i = 0; i < NC - 1; i++) members_open += C[i].state == ST_OPEN;
    uint64_t ts = now_ns();
    wait_quiet(opt.settle_quiet, opt.settle_max);
    double settle_s = (double)(now_ns() - ts) / 1e9;
    if (C[NC - 1].state != ST_OPEN || members_open < opt.members) {
        printf("{\"mode\": \"fanout\", \"members\": %d, \"members_open\": %d, ", opt.members, members_open);
        print_common();
        printf(", \"failed\": 1}\n");
        return 1;
    }
    /* phase 1: fixed offered load */
    uint64_t interval = (uint64_t)(1e9 / opt.rate), t0 = now_ns(), next = t0;
    uint64_t seq0 = F_next_seq, d0 = F_deliveries;
    measure_begin(t0);
    while (now_ns() - t0 < (uint64_t)(opt.duration * 1e9)) {
        uint64_t t = now_ns();
        while (t >= next) {
            fanout_send(next);
            next += interval;
        }
        poll_once(1);
    }
    uint64_t seq1 = F_next_seq;
    drain_fanout(10);
    measure_end(now_ns());
    double el1 = (double)(g_measure_end - g_measure_start) / 1e9;
    hist_t fixed_hist = H;
    uint64_t fixed_deliv = F_deliveries - d0;
    uint64_t fixed_rx = g_rx_measure1 - g_rx_measure0;
    double fixed_cpu = g_cpu1 - g_cpu0;
    /* phase 2: saturation, closed loop with a window of messages not yet delivered to all */
    wait_quiet(0.2, 5);
    uint64_t seq2 = F_next_seq, d2 = F_deliveries;
    F_complete_prefix = seq2;
    t0 = now_ns();
    measure_begin(t0);
    uint64_t last_progress = t0, last_d = F_deliveries;
    while (now_ns() - t0 < (uint64_t)(opt.sat_duration * 1e9)) {
        while (F_next_seq - F_complete_prefix < (uint64_t)opt.window && F_next_seq < F_maxseq)
            fanout_send(now_ns());
        poll_once(1);
        if (F_deliveries != last_d) {
            last_d = F_deliveries;
            last_progress = now_ns();
        } else if (now_ns() - last_progress > 2000000000ull) {
            break;
        }
    }
    measure_end(now_ns());
    uint64_t sat_deliv = F_deliveries - d2;
    double el2 = (double)(g_measure_end - g_measure_start) / 1e9;
    uint64_t seq3 = F_next_seq;
    drain_fanout(10);
    double client_cpu = ru_cpu(&g_ru1) - ru_cpu(&g_ru0);
    printf("{\"mode\": \"fanout\", \"members\": %d, \"rate\": %.1f, \"window\": %d, \"setup_s\": %.3f, "
           "\"settle_s\": %.3f, \"duplicates\": %llu, \"client_cpu_util_sat\": %.3f, ",
           opt.members, opt.rate, opt.window, setup_s, settle_s, (unsigned long long)F_dups,
           el2 > 0 ? client_cpu / el2 : 0);
    print_common();
    printf(", ");
    hist_t sat_hist = H;
    H = fixed_hist;
    fanout_phase_report("fixed", seq0, seq1, fixed_deliv, el1, fixed_cpu, fixed_rx, 1);
    H = sat_hist;
    fanout_phase_report("saturated", seq2, seq3, sat_deliv, el2, g_cpu1 - g_cpu0,
                        g_rx_measure1 - g_rx_measure0, 0);
    printf("}\n");
    return 0;
}

/* ---------- setup ---------- */
static void usage(void) {
    fprintf(stderr, "usage: loadgen echo|fanout|idle --port P [options]; see bench/loadgen.c\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "echo")) opt.mode = MODE_ECHO;
    else if (!strcmp(argv[1], "fanout")) opt.mode = MODE_FANOUT;
    else if (!strcmp(argv[1], "idle")) opt.mode = MODE_IDLE;
    else usage();
    static struct option lo[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"path", 1, 0, 'P'}, {"conns", 1, 0, 'c'},
        {"inflight", 1, 0, 'k'}, {"size", 1, 0, 's'}, {"binary", 0, 0, 'b'}, {"raw", 0, 0, 'r'},
        {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'}, {"warmup-msgs", 1, 0, 'W'},
        {"min-msgs", 1, 0, 'm'}, {"max-msgs", 1, 0, 'M'}, {"timeout", 1, 0, 't'},
        {"members", 1, 0, 'n'}, {"rate", 1, 0, 'R'}, {"window", 1, 0, 'x'},
        {"sat-duration", 1, 0, 'D'}, {"template", 1, 0, 'T'}, {"pids", 1, 0, 'i'},
        {"hold", 1, 0, 'H'}, {"src-spread", 0, 0, 'S'}, {"concurrency", 1, 0, 'C'},
        {"settle-max", 1, 0, 'X'}, {"chat", 0, 0, 'G'}, {"room-size", 1, 0, 'Z'},
        {"per-send", 0, 0, '1'}, {"deflate", 1, 0, 'F'}, {"words", 0, 0, 'V'}, {"prime", 0, 0, 'Q'},
        {0, 0, 0, 0}};
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'P': opt.path = optarg; break;
        case 'c': opt.conns = atoi(optarg); break;
        case 'k': opt.inflight = atoi(optarg); break;
        case 's': opt.size = (size_t)atoll(optarg); break;
        case 'b': opt.binary = 1; break;
        case 'r': opt.raw = 1; break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'W': opt.warmup_msgs = atol(optarg); break;
        case 'm': opt.min_msgs = atol(optarg); break;
        case 'M': opt.max_msgs = atol(optarg); break;
        case 't': opt.hard_timeout = atof(optarg); break;
        case 'n': opt.members = atoi(optarg); break;
        case 'R': opt.rate = atof(optarg); break;
        case 'x': opt.window = atoi(optarg); break;
        case 'D': opt.sat_duration = atof(optarg); break;
        case 'T': opt.tmpl = optarg; break;
        case 'i': opt.pids = optarg; break;
        case 'H': opt.hold = atof(optarg); break;
        case 'S': opt.src_spread = 1; break;
        case 'C': opt.concurrency = atoi(optarg); break;
        case 'X': opt.settle_max = atof(optarg); break;
        case 'G': opt.chat = 1; break;
        case 'Z': opt.room_size = atoi(optarg); break;
        case '1': opt.per_send = 1; break;
        case 'F': opt.deflate = optarg; break;
        case 'V': opt.words = 1; break;
        case 'Q': opt.prime = 1; break;
        default: usage();
        }
    }
    if (!opt.port || opt.inflight < 1 || opt.conns < 1 || opt.room_size < 1) usage();
    if (opt.chat && (opt.mode != MODE_IDLE || opt.raw)) usage(); /* chat members: idle mode only */
    signal(SIGPIPE, SIG_IGN);
    NC = opt.mode == MODE_FANOUT ? opt.members + 1 : opt.mode == MODE_IDLE ? opt.conns + NEW_PROBES : opt.conns;
    struct rlimit rl = {(rlim_t)NC + 1024, (rlim_t)NC + 1024};
    struct rlimit cur;
    getrlimit(RLIMIT_NOFILE, &cur);
    if (cur.rlim_cur < rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "loadgen: cannot raise RLIMIT_NOFILE to %llu\n", (unsigned long long)rl.rlim_cur);
        return 2;
    }
    DST.sin_family = AF_INET;
    DST.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &DST.sin_addr) != 1) usage();
    snprintf(REQ_HOST, sizeof REQ_HOST, "%s:%d", opt.host, opt.port);
    /* pre-encode the echo frame once */
    uint8_t *payload = malloc(opt.size ? opt.size : 1);
    for (size_t i = 0; i < opt.size; i++) payload[i] = opt.binary ? (uint8_t)((i * 31 + 7) % 251) : (uint8_t)('a' + i % 26);
    if (opt.words && !opt.binary) fill_words(payload, opt.size);
    FRAME = malloc(opt.size + opt.size / 8 + 1024);
    if (opt.deflate) FLEN = encode_compressed_frame(FRAME, opt.binary ? 2 : 1, payload, opt.size);
    else FLEN = encode_frame(FRAME, opt.binary ? 2 : 1, payload, opt.size);
    free(payload);
    EP = epoll_create1(0);
    C = calloc((size_t)NC, sizeof *C);
    for (int i = 0; i < NC; i++) {
        C[i].fd = -1;
        C[i].idx = i;
        C[i].ring = calloc((size_t)opt.inflight, sizeof(uint64_t));
    }
    if (opt.mode == MODE_FANOUT) C[NC - 1].is_sender = 1;
    g_t0 = now_ns();
    int rc = opt.mode == MODE_ECHO ? run_echo() : opt.mode == MODE_IDLE ? run_idle() : run_fanout();
    fflush(stdout);
    return rc;
}
