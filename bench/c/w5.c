/* W5 TCP echo, the C floor: a libuv server on 127.0.0.1 that writes back
 * every chunk it reads (TCP_NODELAY on). Prints "READY <port>" once it
 * listens; runs until killed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  uv_write_t req;
  char *base; /* the chunk being echoed, freed once written */
} echo_write;

static void on_closed(uv_handle_t *h) { free(h); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  buf->base = malloc(65536);
  buf->len = buf->base ? 65536 : 0;
}

static void on_written(uv_write_t *req, int status) {
  echo_write *w = (echo_write *)req;
  (void)status; /* a failed write ends with the read error that follows */
  free(w->base);
  free(w);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n > 0) {
    echo_write *w = malloc(sizeof *w);
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    if (w) {
      w->base = buf->base;
      if (uv_write(&w->req, s, &out, 1, on_written) == 0) return;
      free(w);
    }
  }
  free(buf->base);
  if (n < 0 && !uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_closed);
}

static void on_connection(uv_stream_t *server, int status) {
  uv_tcp_t *client;
  if (status < 0) return;
  client = malloc(sizeof *client);
  if (!client) return;
  uv_tcp_init(server->loop, client);
  if (uv_accept(server, (uv_stream_t *)client) != 0) {
    uv_close((uv_handle_t *)client, on_closed);
    return;
  }
  uv_tcp_nodelay(client, 1);
  uv_read_start((uv_stream_t *)client, on_alloc, on_read);
}

int main(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t server;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound, r;
  uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 0, &addr);
  uv_tcp_init(loop, &server);
  r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&server, 511, on_connection);
  if (r == 0) r = uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
  if (r != 0) {
    fprintf(stderr, "w5: %s\n", uv_strerror(r));
    return 1;
  }
  printf("READY %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
