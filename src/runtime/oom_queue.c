/* The OOM event queue (FIFO of container ids). */
#include "oom_queue.h"

#include <stdlib.h>
#include <string.h>

#include "../util/cleanup.h"
#include "../util/log.h"

struct oom_event {
    struct list link;
    char *cid;
};

void oom_queue_init(struct oom_queue *q)
{
    list_init(&q->events);
    q->n = 0;
    q->ready = NULL;
    q->arg = NULL;
}

void oom_queue_free(struct oom_queue *q)
{
    char *cid;
    while ((cid = oom_queue_pop(q)))
        free(cid);
}

int oom_queue_push(struct oom_queue *q, const char *container_id)
{
    struct oom_event *ev = malloc(sizeof(*ev));
    char *cid = strdup(container_id);
    if (!ev || !cid) {
        free(ev);
        free(cid);
        return -1;
    }
    if (q->n == OOM_QUEUE_MAX) {
        char *old = oom_queue_pop(q);
        log_warn("oom", "OOM event queue full; dropping the event of container %s", old);
        free(old);
    }
    ev->cid = cid;
    list_add_tail(&q->events, &ev->link);
    q->n++;
    if (q->ready)
        q->ready(q->arg);
    return 0;
}

char *oom_queue_pop(struct oom_queue *q)
{
    if (list_empty(&q->events))
        return NULL;
    struct oom_event *ev = container_of(q->events.next, struct oom_event, link);
    list_del(&ev->link);
    q->n--;
    char *cid = ev->cid;
    free(ev);
    return cid;
}
