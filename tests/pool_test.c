/*
 * The Lua state's block pool (src/pool.c), driven the way Lua drives an
 * allocator: random allocations, resizes across classes and across
 * POOL_MAX, and frees, each with the block's size, against a model of what
 * every block must still hold. Under valgrind (the suite's embed_cycle
 * checks leaks) and ASan the pool is the plain malloc path.
 */
#include "../src/coil_internal.h"
#include "runner.h"

#define SLOTS 512

typedef struct {
  unsigned char *p;
  size_t size;
  unsigned char fill;
} slot;

static unsigned long next_random(unsigned long *state) {
  *state = *state * 6364136223846793005UL + 1442695040888963407UL;
  return *state >> 33;
}

static size_t random_size(unsigned long *state) {
  switch (next_random(state) % 4) {
  case 0:
    return 1 + next_random(state) % 64; /* strings, CallInfos */
  case 1:
    return 1 + next_random(state) % POOL_MAX; /* every class */
  case 2:
    return POOL_MAX - 8 + next_random(state) % 17; /* the boundary */
  default:
    return 1 + next_random(state) % (4 * POOL_MAX);
  }
}

static void check_fill(const slot *s) {
  for (size_t i = 0; i < s->size; i++) CHECK(s->p[i] == s->fill);
}

static void test_random_use_keeps_contents(void) {
  coil_pool pool;
  slot slots[SLOTS];
  unsigned long state = 12345;
  memset(&pool, 0, sizeof pool);
  memset(slots, 0, sizeof slots);
  for (int step = 0; step < 200000; step++) {
    slot *s = &slots[next_random(&state) % SLOTS];
    if (s->p == NULL) {
      s->size = random_size(&state);
      s->p = coil__pool_realloc(&pool, NULL, 0, s->size);
      CHECK(s->p != NULL);
      CHECK(((size_t)s->p & 15) == 0);
      s->fill = (unsigned char)next_random(&state);
      memset(s->p, s->fill, s->size);
    } else if (next_random(&state) % 3 == 0) {
      check_fill(s);
      CHECK(coil__pool_realloc(&pool, s->p, s->size, 0) == NULL);
      s->p = NULL;
    } else {
      size_t nsize = random_size(&state), keep;
      check_fill(s);
      s->p = coil__pool_realloc(&pool, s->p, s->size, nsize);
      CHECK(s->p != NULL);
      keep = nsize < s->size ? nsize : s->size;
      for (size_t i = 0; i < keep; i++) CHECK(s->p[i] == s->fill);
      memset(s->p, s->fill, nsize);
      s->size = nsize;
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (slots[i].p) {
      check_fill(&slots[i]);
      coil__pool_realloc(&pool, slots[i].p, slots[i].size, 0);
    }
  coil__pool_free(&pool);
}

/* A freed block is handed out again for its class before fresh memory. */
static void test_freed_blocks_are_reused(void) {
  coil_pool pool;
  void *a, *b;
  memset(&pool, 0, sizeof pool);
  a = coil__pool_realloc(&pool, NULL, 0, 100);
  coil__pool_realloc(&pool, a, 100, 0);
  b = coil__pool_realloc(&pool, NULL, 0, 97); /* the same 112-byte class */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  CHECK(a == b);
#endif
  coil__pool_realloc(&pool, b, 97, 0);
  coil__pool_free(&pool);
}

/* A pool grown past its first 8 MiB takes its chunks from mmap: blocks
 * from both kinds of chunk keep their contents, are aligned, and every
 * chunk goes back with coil__pool_free (valgrind and ASan see the rest). */
static void test_large_pool_keeps_contents(void) {
  enum { BLOCKS = 40000, SIZE = 320 }; /* 12.8 MB in blocks */
  coil_pool pool;
  unsigned char **blocks = malloc(BLOCKS * sizeof *blocks);
  CHECK(blocks != NULL);
  memset(&pool, 0, sizeof pool);
  for (int i = 0; i < BLOCKS; i++) {
    blocks[i] = coil__pool_realloc(&pool, NULL, 0, SIZE);
    CHECK(blocks[i] != NULL);
    CHECK(((size_t)blocks[i] & 15) == 0);
    memset(blocks[i], i & 0xff, SIZE);
  }
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  CHECK(pool.held >= BLOCKS * (size_t)SIZE);
  /* the newest chunk (its header starts it) is a big one */
  CHECK((size_t)(pool.end - (char *)pool.chunks) == 512 * 1024);
#endif
  for (int i = 0; i < BLOCKS; i++) {
    CHECK(blocks[i][0] == (i & 0xff) && blocks[i][SIZE - 1] == (i & 0xff));
    if (i % 2) coil__pool_realloc(&pool, blocks[i], SIZE, 0);
  }
  for (int i = 0; i < BLOCKS; i += 2)
    coil__pool_realloc(&pool, blocks[i], SIZE, 0);
  coil__pool_free(&pool);
  free(blocks);
}

static const test_case cases[] = {
    {"large_pool_keeps_contents", test_large_pool_keeps_contents},
    {"random_use_keeps_contents", test_random_use_keeps_contents},
    {"freed_blocks_are_reused", test_freed_blocks_are_reused},
    {NULL, NULL}};

int main(int argc, char **argv) { return run_tests(cases, argc, argv, 60); }
