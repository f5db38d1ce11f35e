/*
 * The pool: the Lua state's small blocks (a coroutine, its stack and
 * CallInfos, a task's record, short strings, small tables) come from size
 * classes 16 bytes apart, carved from 64 KiB chunks and kept on a free list
 * per class once freed. Lua passes every block's size when it frees or
 * resizes one, so a block needs no header: it costs its size rounded up to
 * 16 bytes (malloc adds 8 to 16 more to each), and an allocation or a free
 * is a list push or pop. Blocks above POOL_MAX go to malloc.
 *
 * What the pool keeps it keeps until the runtime is freed (coil__pool_free
 * releases every chunk at once, after lua_close): memory freed by Lua goes
 * back to its class, not to the system. Under AddressSanitizer the pool is
 * off, so that every Lua block stays visible to it.
 */
#include <stdlib.h>
#include <string.h>

#include "coil_internal.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define POOL_OFF 1
#else
#define POOL_OFF 0
#endif

#define POOL_CHUNK (64 * 1024)

struct coil_pool_chunk {
  struct coil_pool_chunk *next;
  void *align; /* blocks start 16-byte aligned */
};

static size_t class_of(size_t size) {
  return (size + POOL_GRAIN - 1) / POOL_GRAIN;
}

/* A block of class k, or NULL when no memory is left. */
static void *take(coil_pool *pool, size_t k) {
  void *block = pool->free[k];
  size_t size = k * POOL_GRAIN;
  if (block) {
    pool->free[k] = *(void **)block;
    return block;
  }
  if ((size_t)(pool->end - pool->next) < size) {
    struct coil_pool_chunk *chunk = malloc(POOL_CHUNK);
    if (!chunk) return NULL;
    chunk->next = pool->chunks;
    pool->chunks = chunk;
    /* the rest of the old chunk (less than POOL_MAX) is given up */
    pool->next = (char *)(chunk + 1);
    pool->end = (char *)chunk + POOL_CHUNK;
  }
  block = pool->next;
  pool->next += size;
  return block;
}

static void give_back(coil_pool *pool, void *block, size_t size) {
  size_t k = class_of(size);
  *(void **)block = pool->free[k];
  pool->free[k] = block;
}

void *coil__pool_realloc(coil_pool *pool, void *ptr, size_t osize,
                         size_t nsize) {
  void *block;
  if (POOL_OFF) {
    if (nsize == 0) {
      free(ptr);
      return NULL;
    }
    return realloc(ptr, nsize);
  }
  if (nsize == 0) {
    if (osize > POOL_MAX) free(ptr);
    else if (ptr) give_back(pool, ptr, osize);
    return NULL;
  }
  if (ptr == NULL) {
    return nsize > POOL_MAX ? malloc(nsize) : take(pool, class_of(nsize));
  }
  if (osize > POOL_MAX && nsize > POOL_MAX) return realloc(ptr, nsize);
  if (osize <= POOL_MAX && nsize <= POOL_MAX &&
      class_of(osize) == class_of(nsize))
    return ptr;
  block = nsize > POOL_MAX ? malloc(nsize) : take(pool, class_of(nsize));
  if (!block) {
    /* Lua counts on a shrink never failing: keep the bigger block. It
     * serves the smaller size; freed later as that size it is filed in a
     * smaller class (a malloc'd one then stays with the pool: out of
     * memory, a leak is the lesser harm) */
    return nsize <= osize ? ptr : NULL;
  }
  memcpy(block, ptr, osize < nsize ? osize : nsize);
  if (osize > POOL_MAX) free(ptr);
  else give_back(pool, ptr, osize);
  return block;
}

void coil__pool_free(coil_pool *pool) {
  struct coil_pool_chunk *chunk = pool->chunks, *next;
  for (; chunk; chunk = next) {
    next = chunk->next;
    free(chunk);
  }
  memset(pool, 0, sizeof *pool);
}
