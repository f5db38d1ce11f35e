/* echo_load: a TCP echo load generator on libuv, for `coil --workers`
 * (bench/workers). Opens C connections to host:port; each sends a message
 * of S bytes, waits until all S bytes came back, and sends the next, for T
 * seconds. Prints "<requests/s> requests/s (<n> requests, <c> connections,
 * <s> bytes, <t> s)" on stdout; a failure is one line on stderr, exit 1.
 *
 *   echo_load host port [connections=50] [seconds=5] [size=1024]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  size_t got; /* bytes of the current answer received */
  int closing;
  int writing; /* `write` is in flight: a request may not be reused before
                  its callback, which can come after the whole echo did */
  int due;     /* the next message waits for that callback */
} conn;

static uv_loop_t *loop;
static uv_timer_t deadline;
static char *message;
static size_t size;
static unsigned long long requests;
static int stopping, failed, nconns;
static conn *conns;

static void on_closed(uv_handle_t *h) { (void)h; }

static void stop_all(void) {
  int i;
  if (stopping) return;
  stopping = 1;
  for (i = 0; i < nconns; i++)
    if (!uv_is_closing((uv_handle_t *)&conns[i].tcp))
      uv_close((uv_handle_t *)&conns[i].tcp, on_closed);
  if (!uv_is_closing((uv_handle_t *)&deadline))
    uv_close((uv_handle_t *)&deadline, NULL);
}

static void fail(const char *what, int err) {
  if (stopping) return;
  fprintf(stderr, "echo_load: %s: %s\n", what, uv_strerror(err));
  failed = 1;
  stop_all();
}

static void send_one(conn *c);

static void on_written(uv_write_t *req, int status) {
  conn *c = (conn *)req->data;
  c->writing = 0;
  if (status < 0) {
    fail("write", status);
    return;
  }
  if (c->due && !stopping) {
    c->due = 0;
    send_one(c);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char scratch[65536];
  (void)h;
  (void)suggested;
  buf->base = scratch;
  buf->len = sizeof scratch;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = (conn *)s->data;
  (void)buf;
  if (n < 0) {
    fail("read", (int)n);
    return;
  }
  c->got += (size_t)n;
  if (c->got >= size) {
    requests++;
    c->got -= size;
    if (!stopping) send_one(c);
  }
}

static void send_one(conn *c) {
  uv_buf_t b = uv_buf_init(message, (unsigned)size);
  int r;
  if (c->writing) {
    c->due = 1;
    return;
  }
  c->writing = 1;
  c->write.data = c;
  r = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (r < 0) {
    c->writing = 0;
    fail("write", r);
  }
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = (conn *)req->data;
  int r;
  if (status < 0) {
    fail("connect", status);
    return;
  }
  r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r < 0) {
    fail("read_start", r);
    return;
  }
  send_one(c);
}

static void on_deadline(uv_timer_t *t) {
  (void)t;
  stop_all();
}

int main(int argc, char **argv) {
  struct sockaddr_in addr;
  double seconds;
  uint64_t t0, t1;
  int i, r;
  if (argc < 3) {
    fprintf(stderr,
            "usage: echo_load host port [connections] [seconds] [size]\n");
    return 1;
  }
  nconns = argc > 3 ? atoi(argv[3]) : 50;
  seconds = argc > 4 ? atof(argv[4]) : 5;
  size = argc > 5 ? (size_t)atol(argv[5]) : 1024;
  if (nconns <= 0 || seconds <= 0 || size == 0) {
    fprintf(stderr, "echo_load: bad connections, seconds or size\n");
    return 1;
  }
  r = uv_ip4_addr(argv[1], atoi(argv[2]), &addr);
  if (r < 0) {
    fprintf(stderr, "echo_load: %s: %s\n", argv[1], uv_strerror(r));
    return 1;
  }
  message = malloc(size);
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!message || !conns) return 1;
  memset(message, 'x', size);
  loop = uv_default_loop();
  for (i = 0; i < nconns; i++) {
    conn *c = &conns[i];
    uv_tcp_init(loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    c->connect.data = c;
    r = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&addr,
                       on_connect);
    if (r < 0) fail("connect", r);
  }
  uv_timer_init(loop, &deadline);
  uv_timer_start(&deadline, on_deadline, (uint64_t)(seconds * 1000), 0);
  t0 = uv_hrtime();
  uv_run(loop, UV_RUN_DEFAULT);
  t1 = uv_hrtime();
  uv_loop_close(loop);
  free(message);
  free(conns);
  if (failed) return 1;
  seconds = (double)(t1 - t0) / 1e9;
  printf("%.0f requests/s (%llu requests, %d connections, %zu bytes, %.1f s)\n",
         (double)requests / seconds, requests, nconns, size, seconds);
  return 0;
}
