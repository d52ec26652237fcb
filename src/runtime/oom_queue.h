/* Sandbox-wide queue of OOM events (container ids) for GetOOMEvent. Producers push; the RPC layer pops.
 * Events are kept until a GetOOMEvent call takes them, so none is lost when nobody is polling. */
#pragma once
#include <stddef.h>

#include "../util/list.h"

#define OOM_QUEUE_MAX 1024

struct oom_queue {
    struct list events;
    size_t n;
    void (*ready)(void *arg); /* called after a push */
    void *arg;
};

void oom_queue_init(struct oom_queue *q);
void oom_queue_free(struct oom_queue *q);
/* Queue an event (the oldest is dropped, with a warning, past OOM_QUEUE_MAX). 0, or -1 on ENOMEM. */
int oom_queue_push(struct oom_queue *q, const char *container_id);
/* Oldest event, malloc'd, or NULL when empty. */
char *oom_queue_pop(struct oom_queue *q);
