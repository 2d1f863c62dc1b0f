/* pool.c: persistent worker threads. A call hands the pool a task count; workers (and the caller, as
 * worker 0) take task indices from an atomic counter until none are left.
 *
 * Workers spin briefly on the generation counter before sleeping on the condition variable: inside a
 * sequence the next batch of tasks follows within microseconds, and a futex wake-up would cost more
 * than the work of a small step. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define FG_SPIN_ITERATIONS 20000

struct fg_pool {
    int num_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pthread_cond_t done;
    atomic_long generation;   /* bumped once per fg_pool_run */
    atomic_long next_task;
    atomic_int busy_workers;  /* workers still inside the current generation */
    int64_t n_tasks;
    fg_task_fn task;
    void *arg;
    int stopping;
};

static void run_tasks(fg_pool *pool) {
    for (;;) {
        long index = atomic_fetch_add(&pool->next_task, 1);
        if (index >= pool->n_tasks) return;
        pool->task(pool->arg, index);
    }
}

static void *worker_main(void *opaque) {
    fg_pool *pool = (fg_pool *)opaque;
    long seen = 0;
    unsigned csr = fg_denormals_off(); /* every compute thread flushes denormals (internal.h) */
    for (;;) {
        long generation = atomic_load(&pool->generation);
        for (int spin = 0; generation == seen && spin < FG_SPIN_ITERATIONS; spin++)
            generation = atomic_load(&pool->generation);
        if (generation == seen) {
            pthread_mutex_lock(&pool->mutex);
            while ((generation = atomic_load(&pool->generation)) == seen && !pool->stopping)
                pthread_cond_wait(&pool->wake, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (pool->stopping) break;
        seen = generation;
        run_tasks(pool);
        if (atomic_fetch_sub(&pool->busy_workers, 1) == 1) {
            pthread_mutex_lock(&pool->mutex);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mutex);
        }
    }
    fg_denormals_restore(csr);
    return NULL;
}

fg_status fg_pool_create(int num_threads, fg_pool **out) {
    if (!out) return FG_ERR_NULL_POINTER;
    *out = NULL;
    if (num_threads < 1 || num_threads > 1024) return FG_ERR_INVALID_SIZE;
    fg_pool *pool = (fg_pool *)calloc(1, sizeof(fg_pool));
    if (!pool) return FG_ERR_OUT_OF_MEMORY;
    pool->num_threads = 1;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    if (num_threads > 1) {
        pool->threads = (pthread_t *)calloc((size_t)num_threads - 1, sizeof(pthread_t));
        if (!pool->threads) {
            fg_pool_destroy(pool);
            return FG_ERR_OUT_OF_MEMORY;
        }
        for (int i = 0; i < num_threads - 1; i++) {
            if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
                fg_pool_destroy(pool);
                return FG_ERR_THREAD;
            }
            pool->num_threads++;
        }
    }
    *out = pool;
    return FG_OK;
}

void fg_pool_destroy(fg_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    pool->stopping = 1;
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < pool->num_threads - 1; i++) pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool);
}

int fg_pool_num_threads(const fg_pool *pool) { return pool ? pool->num_threads : 1; }

fg_status fg_pool_run(fg_pool *pool, int64_t n_tasks, fg_task_fn task, void *arg) {
    if (!task) return FG_ERR_NULL_POINTER;
    if (!pool || pool->num_threads == 1 || n_tasks <= 1) {
        for (int64_t i = 0; i < n_tasks; i++) task(arg, i);
        return FG_OK;
    }
    pool->task = task;
    pool->arg = arg;
    pool->n_tasks = n_tasks;
    atomic_store(&pool->next_task, 0);
    atomic_store(&pool->busy_workers, pool->num_threads - 1);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    run_tasks(pool);
    /* Wait for every worker to leave the generation, so the next run cannot race with a straggler. */
    for (int spin = 0; atomic_load(&pool->busy_workers) > 0 && spin < FG_SPIN_ITERATIONS; spin++) {
    }
    if (atomic_load(&pool->busy_workers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        while (atomic_load(&pool->busy_workers) > 0) pthread_cond_wait(&pool->done, &pool->mutex);
        pthread_mutex_unlock(&pool->mutex);
    }
    return FG_OK;
}
