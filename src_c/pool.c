/* pool.c: persistent worker threads. A call hands the pool n tasks; the caller and the workers claim
 * task indices until none are left, and the call returns when every claimed task has finished.
 *
 * The caller never waits for a worker that has not claimed anything: on a busy machine a worker may
 * be descheduled for milliseconds, and a step that waited for it to check in would take that long.
 * Such a worker simply finds nothing left when it runs. To make that safe, the run's generation and
 * the next task index share one 64-bit atomic (the "ticket"): claiming a task and checking that it
 * belongs to the current run is one compare-and-swap, so a late worker can never take a task of a
 * later run. The task count carries its run's generation too (the "limit"): the caller stores the
 * next run's limit before that run's ticket, and a worker that compared an old ticket with a new
 * limit would take the index past the old run's end for a task of the new run, unpublished
 * (tests/c/test_pool.c caught exactly that: a task ran twice, or the caller returned before one
 * finished). A worker therefore only claims while ticket and limit name the same generation.
 *
 * Workers spin briefly on the ticket before sleeping on the condition variable: inside a sequence the
 * next run follows within microseconds, and a futex wake-up would cost more than a small step.
 *
 * Two threads on one CPU. When the caller wakes a sleeping worker, Linux often queues the worker on
 * the caller's own CPU (wake-affine) even though another CPU is idle, and an idle CPU only pulls it
 * over at its next balancing tick, milliseconds later. Meanwhile the caller computes every task alone
 * and any task the worker does claim waits for the caller's time slice: measured on a 2-core VM,
 * the first 2-thread call of B=1 T=100 H=512 after 0.1 s idle took 5-7 ms instead of 3.5, the worker
 * absent for 99 of 100 steps. So the caller publishes its CPU and, after waking sleepers, yields once;
 * a worker that wakes up on the caller's CPU moves itself to another allowed CPU (set the affinity
 * without that CPU, which migrates it at once, then restore the old mask). Both spinning loops also
 * yield every FG_YIELD_EVERY pauses, so threads that do share a CPU take turns instead of burning
 * each other's time slices.
 *
 * Fork. A child process holds only the thread that called fork(): a pool created before the fork has
 * no workers there, its mutex may be held by a worker that does not exist, and joining those workers
 * waits forever (measured: a forked child that had used a 2-thread pool hung at exit, in
 * fg_pool_destroy, as a gunicorn --preload worker does on a normal shutdown). Every fork bumps a
 * counter in the child (pthread_atfork); a pool created in an earlier generation starts a new set of
 * workers at its next call, and is destroyed without joining the ones it had in the parent. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getcpu, CPU_* and sched_setaffinity */
#endif
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FG_CPU_RELAX() _mm_pause()
#else
#define FG_CPU_RELAX() ((void)0)
#endif

#define FG_SPIN_ITERATIONS 4000
#define FG_PAUSE_SECONDS 25e-9 /* one pause, measured on Zen 4 */
#define FG_SPIN_SECONDS (FG_SPIN_ITERATIONS * FG_PAUSE_SECONDS) /* how long a worker spins: ~100 us */
#define FG_YIELD_EVERY 64

#if defined(__linux__)
static int current_cpu(void) { return sched_getcpu(); }

/* Moves the calling thread off `cpu` when its affinity allows another one (see the top of the file). */
static void move_off_cpu(int cpu) {
    cpu_set_t mask, others;
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof mask, &mask) != 0 || CPU_COUNT(&mask) < 2) return;
    others = mask;
    CPU_CLR(cpu, &others);
    if (sched_setaffinity(0, sizeof others, &others) == 0) sched_setaffinity(0, sizeof mask, &mask);
}
#else
static int current_cpu(void) { return -1; }
static void move_off_cpu(int cpu) { (void)cpu; }
#endif

/* Forks seen by this process since it loaded the core (the child's count only ever grows). */
static atomic_uint fork_count;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void count_fork_in_child(void) { atomic_fetch_add(&fork_count, 1); }
static void install_fork_counter(void) { pthread_atfork(NULL, NULL, count_fork_in_child); }

struct fg_pool {
    int num_threads;          /* threads that run tasks, the caller included */
    int requested;            /* num_threads asked for at creation */
    unsigned forks;           /* fork_count when this process started the workers */
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    _Atomic uint64_t ticket;  /* (generation << 32) | index of the next unclaimed task */
    atomic_long done;         /* tasks of the current run finished */
    _Atomic uint64_t limit;   /* (generation << 32) | task count; stored before the run's ticket */
    fg_task_fn task;
    void *arg;
    atomic_int stopping;      /* set once by fg_pool_destroy; workers read it outside the mutex too */
    atomic_int sleepers;   /* workers waiting on the condition variable */
    atomic_int caller_cpu; /* where the current run's caller was when it published it, or -1 */
    atomic_int next_index; /* fg_pool_thread_index of the next worker to start, less 1 */
    double last_call;      /* when the previous forward call began (fg_pool_engage), seconds */
};

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline uint32_t generation_of(uint64_t ticket) { return (uint32_t)(ticket >> 32); }

/* Claims and runs tasks of `generation` until none are left or a newer run has started. */
static void run_tasks(fg_pool *pool, uint32_t generation) {
    uint64_t ticket = atomic_load(&pool->ticket);
    while (generation_of(ticket) == generation) {
        /* A limit of another generation belongs to the next run, being prepared: ours is over. If the
         * generations match and the index is below the count, the compare-and-swap below can only
         * succeed while this run is unfinished, since a finished run has every index claimed. */
        const uint64_t limit = atomic_load(&pool->limit);
        if (generation_of(limit) != generation || (uint32_t)ticket >= (uint32_t)limit) break;
        /* On success the task is ours; on failure `ticket` is reloaded and checked again. */
        if (atomic_compare_exchange_weak(&pool->ticket, &ticket, ticket + 1)) {
            pool->task(pool->arg, (int64_t)(uint32_t)ticket);
            atomic_fetch_add(&pool->done, 1);
            ticket = atomic_load(&pool->ticket);
        }
    }
}

/* fg_pool_thread_index (internal.h): 0 on every thread but a pool's workers. */
static _Thread_local int thread_index;

int fg_pool_thread_index(void) { return thread_index; }

static void *worker_main(void *opaque) {
    fg_pool *pool = (fg_pool *)opaque;
    thread_index = 1 + atomic_fetch_add(&pool->next_index, 1);
    uint32_t seen = 0;
    unsigned csr = fg_denormals_off(); /* every compute thread flushes denormals (internal.h) */
    for (;;) {
        uint32_t generation = generation_of(atomic_load(&pool->ticket));
        for (int spin = 0; generation == seen && spin < FG_SPIN_ITERATIONS; spin++) {
            FG_CPU_RELAX();
            if (spin % FG_YIELD_EVERY == FG_YIELD_EVERY - 1) sched_yield();
            generation = generation_of(atomic_load(&pool->ticket));
        }
        if (generation == seen) {
            pthread_mutex_lock(&pool->mutex);
            atomic_fetch_add(&pool->sleepers, 1);
            while ((generation = generation_of(atomic_load(&pool->ticket))) == seen && !pool->stopping)
                pthread_cond_wait(&pool->wake, &pool->mutex);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mutex);
            const int cpu = current_cpu();
            if (cpu >= 0 && cpu == atomic_load(&pool->caller_cpu)) move_off_cpu(cpu);
        }
        if (pool->stopping) break;
        seen = generation;
        run_tasks(pool, generation);
    }
    fg_denormals_restore(csr);
    return NULL;
}

/* Resets the run state and starts requested - 1 workers (pool->num_threads counts those that started). */
static fg_status start_workers(fg_pool *pool) {
    pool->num_threads = 1;
    pool->threads = NULL;
    pool->task = NULL;
    pool->arg = NULL;
    pool->last_call = 0;
    atomic_store(&pool->ticket, 0);
    atomic_store(&pool->limit, 0);
    atomic_store(&pool->done, 0);
    atomic_store(&pool->stopping, 0);
    atomic_store(&pool->sleepers, 0);
    atomic_store(&pool->caller_cpu, -1);
    atomic_store(&pool->next_index, 0);
    pool->forks = atomic_load(&fork_count);
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    if (pool->requested < 2) return FG_OK;
    pool->threads = (pthread_t *)calloc((size_t)pool->requested - 1, sizeof(pthread_t));
    if (!pool->threads) return FG_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < pool->requested - 1; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) return FG_ERR_THREAD;
        pool->num_threads++;
#if defined(__linux__)
        /* Named by the creator, so the name is there when the call that started the pool returns
         * (a worker naming itself might not have run yet). top and gdb show it, and the tests count
         * exactly these threads, so one of the BLAS's or Python's starting or ending meanwhile cannot
         * move their count. A failure only leaves the inherited name. */
        (void)pthread_setname_np(pool->threads[i], "fastgru-worker");
#endif
    }
    return FG_OK;
}

/* In a forked child: forgets the parent's workers (they do not exist here; their memory is the
 * child's copy) and starts new ones. If that fails, the pool runs every task on the caller. */
static void restart_after_fork(fg_pool *pool) {
    free(pool->threads);
    if (start_workers(pool) != FG_OK) {
        pool->requested = pool->num_threads; /* what did start; the rest is not retried */
    }
}

static inline int forked_since_start(const fg_pool *pool) { return pool->forks != atomic_load(&fork_count); }

fg_status fg_pool_create(int num_threads, fg_pool **out) {
    if (!out) return FG_ERR_NULL_POINTER;
    *out = NULL;
    if (num_threads < 1 || num_threads > 1024) return FG_ERR_INVALID_SIZE;
    pthread_once(&atfork_once, install_fork_counter);
    fg_pool *pool = (fg_pool *)calloc(1, sizeof(fg_pool));
    if (!pool) return FG_ERR_OUT_OF_MEMORY;
    pool->requested = num_threads;
    const fg_status status = start_workers(pool);
    if (status != FG_OK) {
        fg_pool_destroy(pool);
        return status;
    }
    *out = pool;
    return FG_OK;
}

void fg_pool_destroy(fg_pool *pool) {
    if (!pool) return;
    if (forked_since_start(pool)) { /* the workers were the parent's: nothing to stop or join here */
        free(pool->threads);
        free(pool);
        return;
    }
    pthread_mutex_lock(&pool->mutex);
    pool->stopping = 1;
    atomic_fetch_add(&pool->ticket, (uint64_t)1 << 32); /* a new generation wakes the spinners */
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < pool->num_threads - 1; i++) pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool);
}

int fg_pool_num_threads(const fg_pool *pool) {
    if (!pool) return 1;
    return forked_since_start(pool) ? pool->requested : pool->num_threads; /* a forked pool: after its restart */
}

int fg_pool_engage(fg_pool *pool, double macs) {
    if (pool && forked_since_start(pool)) restart_after_fork(pool);
    if (!pool || pool->num_threads < 2) return 0;
    const double now = now_seconds(), since_last = now - pool->last_call;
    pool->last_call = now;
    return macs >= FG_MIN_WAKE_MACS || atomic_load(&pool->sleepers) == 0 || since_last < FG_SPIN_SECONDS;
}

fg_status fg_pool_run(fg_pool *pool, int64_t n_tasks, fg_task_fn task, void *arg) {
    if (!task) return FG_ERR_NULL_POINTER;
    if (pool && forked_since_start(pool)) restart_after_fork(pool);
    if (!pool || pool->num_threads == 1 || n_tasks <= 1) {
        for (int64_t i = 0; i < n_tasks; i++) task(arg, i);
        return FG_OK;
    }
    if (n_tasks > UINT32_MAX) return FG_ERR_INVALID_SIZE;
    /* Every task of the previous run has finished (we waited for them), and no worker reads task, arg
     * or done before claiming a task of this run, which needs this run's ticket and limit. */
    const uint32_t generation = generation_of(atomic_load(&pool->ticket)) + 1;
    pool->task = task;
    pool->arg = arg;
    atomic_store(&pool->done, 0);
    atomic_store(&pool->limit, (uint64_t)generation << 32 | (uint64_t)n_tasks);
    atomic_store(&pool->caller_cpu, current_cpu());
    /* Published under the mutex so that a worker about to sleep cannot miss it. */
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->ticket, (uint64_t)generation << 32);
    pthread_cond_broadcast(&pool->wake);
    const int woke_sleepers = atomic_load(&pool->sleepers) > 0;
    pthread_mutex_unlock(&pool->mutex);
    if (woke_sleepers) sched_yield(); /* lets a worker queued on this CPU run and move away */
    run_tasks(pool, generation);
    /* Only tasks that a worker claimed can still be running; they are short, so spin, then yield. */
    for (int spin = 0; atomic_load(&pool->done) < n_tasks; spin++) {
        if (spin < FG_YIELD_EVERY) FG_CPU_RELAX();
        else sched_yield();
    }
    return FG_OK;
}
