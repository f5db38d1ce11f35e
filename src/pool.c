/*
 * The pool: the Lua state's small blocks (a coroutine, its stack and
 * CallInfos, a task's record, short strings, small tables) come from size
 * classes 16 bytes apart, carved from 64 KiB chunks and kept on a free list
 * per class once freed. Lua passes every block's size when it frees or
 * resizes one, so a block needs no header: it costs its size rounded up to
 * 16 bytes (malloc adds 8 to 16 more to each), and an allocation or a free
 * is a list push or pop. Blocks above POOL_MAX go to malloc.
 *
 * Chunks are 64 KiB from malloc, then, once the pool is large (many
 * tasks), 512 KiB mapped with their pages already in place.
 *
 * What the pool keeps it keeps until the runtime is freed (coil__pool_free
 * releases every chunk at once, after lua_close): memory freed by Lua goes
 * back to its class, not to the system. Under AddressSanitizer the pool is
 * off, so that every Lua block stays visible to it.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "coil_internal.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define POOL_OFF 1
#else
#define POOL_OFF 0
#endif

#define POOL_CHUNK (64 * 1024)
/* Once the chunks hold POOL_BIG_AFTER bytes, new ones are POOL_BIG bytes
 * mapped with their pages in place */
#define POOL_BIG (512 * 1024)
#define POOL_BIG_AFTER (8 * 1024 * 1024)

struct coil_pool_chunk {
  struct coil_pool_chunk *next;
  size_t size; /* POOL_CHUNK from malloc, or POOL_BIG from mmap */
};

/* A pool this large belongs to a program with many tasks, and it grows
 * by touching fresh memory: a page fault per 4 KiB, which costs
 * microseconds in a virtual machine (W1 spent a third of its time there).
 * MAP_POPULATE has the kernel fill a whole big chunk in one call instead.
 * Not transparent huge pages: on a VM that hands free memory back to its
 * host, a fresh 2 MiB page is sometimes ten times slower to clear. */
static struct coil_pool_chunk *big_chunk(void) {
#ifdef MAP_POPULATE
  void *map = mmap(NULL, POOL_BIG, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return map == MAP_FAILED ? NULL : map;
#else
  return NULL;
#endif
}

static struct coil_pool_chunk *new_chunk(coil_pool *pool) {
  struct coil_pool_chunk *chunk = NULL;
  if (pool->held >= POOL_BIG_AFTER && (chunk = big_chunk()) != NULL)
    chunk->size = POOL_BIG;
  else if ((chunk = malloc(POOL_CHUNK)) != NULL) chunk->size = POOL_CHUNK;
  else return NULL;
  pool->held += chunk->size;
  return chunk;
}

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
    struct coil_pool_chunk *chunk = new_chunk(pool);
    if (!chunk) return NULL;
    chunk->next = pool->chunks;
    pool->chunks = chunk;
    /* the rest of the old chunk (less than POOL_MAX) is given up */
    pool->next = (char *)(chunk + 1);
    pool->end = (char *)chunk + chunk->size;
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
    if (chunk->size == POOL_BIG) munmap(chunk, POOL_BIG);
    else free(chunk);
  }
  memset(pool, 0, sizeof *pool);
}
