/* A bump allocator for one step's activations. Chunks are only added while a step needs
 * more than the arena holds; reset folds them into one block of the high-water size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

#define ALIGN 64

struct dml_arena_chunk {
    dml_arena_chunk *next;
    size_t cap, used; /* bytes of mem */
    unsigned char *mem;
};

static dml_arena_chunk *chunk_new(dml_arena *a, size_t cap)
{
    dml_arena_chunk *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    if (posix_memalign((void **)&c->mem, ALIGN, cap ? cap : ALIGN) != 0) {
        free(c);
        return NULL;
    }
    c->cap = cap;
    c->used = 0;
    c->next = NULL;
    a->n_system_allocs++;
    return c;
}

static void chunks_free(dml_arena_chunk *c)
{
    while (c) {
        dml_arena_chunk *next = c->next;
        free(c->mem);
        free(c);
        c = next;
    }
}

void dml_arena_init(dml_arena *a, size_t bytes)
{
    a->used = a->high_water = a->n_system_allocs = 0;
    a->head = chunk_new(a, bytes);
}

void *dml_arena_alloc(dml_arena *a, size_t bytes)
{
    size_t size = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    dml_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < size) {
        /* Grow geometrically so a first step of many small tensors makes few chunks. */
        size_t cap = c ? c->cap * 2 : 1 << 20;
        if (cap < size)
            cap = size;
        dml_arena_chunk *fresh = chunk_new(a, cap);
        if (!fresh)
            return NULL;
        fresh->next = c;
        a->head = c = fresh;
    }
    void *p = c->mem + c->used;
    c->used += size;
    a->used += size;
    if (a->used > a->high_water)
        a->high_water = a->used;
    return p;
}

void dml_arena_reset(dml_arena *a)
{
    if (a->head && a->head->next) {
        size_t total = 0;
        for (dml_arena_chunk *c = a->head; c; c = c->next)
            total += c->cap;
        chunks_free(a->head);
        a->head = chunk_new(a, total > a->high_water ? total : a->high_water);
    }
    if (a->head)
        a->head->used = 0;
    a->used = 0;
}

void dml_arena_poison(dml_arena *a)
{
    for (dml_arena_chunk *c = a->head; c; c = c->next)
        memset(c->mem + c->used, 0xff, c->cap - c->used);
}

size_t dml_arena_high_water(const dml_arena *a)
{
    return a->high_water;
}

void dml_arena_free(dml_arena *a)
{
    chunks_free(a->head);
    a->head = NULL;
    a->used = 0;
}
