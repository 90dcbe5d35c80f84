package org.ublkmirror.link;

import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.MetadataException;
import org.ublkmirror.mirror.Mirror;
import org.ublkmirror.mirror.ResyncRunner;
import org.ublkmirror.mirror.SplitBrainException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * Watches the secondary of a running mirror and brings it back after an outage.
 *
 * <p>State machine (one thread, ticking every {@link #TICK_MS} ms):
 * <pre>
 *   CONNECTED --(heartbeat read fails or times out, store unhealthy, or the forker degraded on a
 *               write/flush error)--> RECONNECTING
 *   RECONNECTING --(retry due: policy auto -> Mirror.attach -> resync starts)--> CONNECTED
 *                --(retry due: policy manual -> Mirror.probeSecondary succeeds)--> REACHABLE
 *                --(attempt fails)--> RECONNECTING, next retry after Backoff.delay(attempts++)
 *                --(split brain)--> SPLIT_BRAIN (no more attempts; 'mirrorctl attach --discard-secondary')
 *   REACHABLE  --(operator: mirrorctl attach)--> CONNECTED;  re-probed every retry-max
 *   any --(mirrorctl detach)--> DETACHED (no attempts until 'mirrorctl attach')
 * </pre>
 * A resync interrupted by a new outage degrades the mirror again (the runner does that); the
 * next attach starts a new resync from the tracking log, where the last one stopped. An attempt
 * is never made while a resync is still running: it ends within the I/O timeout when its
 * secondary is gone.
 */
public final class LinkMonitor implements AutoCloseable {
    static final long TICK_MS = 50;

    public enum State { CONNECTED, RECONNECTING, REACHABLE, DETACHED, SPLIT_BRAIN }

    private final Mirror mirror;
    private final LongSupplier clock;
    private final Random random;
    private final Consumer<String> log;
    private volatile LinkConfig config;
    private volatile Backoff backoff;
    private final Thread thread;
    private volatile boolean stop;

    // guarded by this
    private State state;
    private int attempts;
    private long nextRetryAt;
    private long lastHeartbeatAt;
    private String lastError;
    private long lastErrorAt;
    private long outages;
    private long reconnects;
    private long downSince;
    private long connectedAt;
    private String reachable;

    public LinkMonitor(Mirror mirror, LinkConfig config, Consumer<String> log) {
        this(mirror, config, log, System::currentTimeMillis, new Random());
    }

    LinkMonitor(Mirror mirror, LinkConfig config, Consumer<String> log, LongSupplier clock, Random random) {
        this.mirror = mirror;
        this.config = config;
        this.clock = clock;
        this.random = random;
        this.backoff = new Backoff(config.retryMin().toMillis(), config.retryMax().toMillis(), random);
        this.log = log == null ? s -> { } : log;
        this.state = mirror.forker().secondaryOnline() ? State.CONNECTED : State.RECONNECTING;
        this.nextRetryAt = clock.getAsLong();
        if (state == State.RECONNECTING) {
            outages = 1;
            downSince = clock.getAsLong();
            lastError = mirror.forker().degradedReason();
            lastErrorAt = downSince;
        }
        this.thread = new Thread(this::run, "link-" + mirror.config().name());
        this.thread.setDaemon(true);
    }

    public LinkMonitor start() {
        thread.start();
        return this;
    }

    public LinkConfig config() {
        return config;
    }

    /** Takes new settings at once (policy, heartbeat, backoff, rate); timeouts apply to the next connection. */
    public synchronized void reconfigure(LinkConfig c) {
        this.config = c;
        this.backoff = new Backoff(c.retryMin().toMillis(), c.retryMax().toMillis(), random);
        if (state == State.REACHABLE && c.policy() == ResyncPolicy.AUTO) state = State.RECONNECTING;
        nextRetryAt = Math.min(nextRetryAt, clock.getAsLong() + backoff.delay(attempts));
        notifyAll();
    }

    public synchronized State state() {
        return state;
    }

    /** What status shows under "link". */
    public synchronized Map<String, Object> status() {
        Map<String, Object> m = new LinkedHashMap<>();
        long now = clock.getAsLong();
        m.put("state", state.name().toLowerCase().replace('_', '-'));
        m.put("resync_policy", config.policy().lower());
        if (state == State.RECONNECTING || state == State.REACHABLE) {
            m.put("attempts", (long) attempts);
            m.put("next_retry_ms", Math.max(0, nextRetryAt - now));
            m.put("next_retry_at", nextRetryAt);
            m.put("down_since", downSince);
        }
        if (state == State.REACHABLE) m.put("reachable", reachable);
        m.put("last_error", lastError);
        m.put("last_error_at", lastErrorAt == 0 ? null : lastErrorAt);
        m.put("outages", outages);
        m.put("reconnects", reconnects);
        m.put("settings", config.toMap());
        return m;
    }

    private void run() {
        while (!stop) {
            try {
                step();
                synchronized (this) {
                    if (!stop) wait(TICK_MS);
                }
            } catch (InterruptedException e) {
                return;
            } catch (RuntimeException e) {
                // never let the watcher die: note it and go on
                synchronized (this) {
                    lastError = "link monitor: " + e;
                    lastErrorAt = clock.getAsLong();
                }
            }
        }
    }

    /** One tick of the state machine (package-private: tests drive it). */
    void step() {
        long now = clock.getAsLong();
        if (mirror.state() == Mirror.State.CLOSED) return;
        boolean online = mirror.forker().secondaryOnline();
        if (online) {
            synchronized (this) {
                if (state != State.CONNECTED) {
                    // an operator's attach (manual policy, or after a detach)
                    state = State.CONNECTED;
                    connectedAt = now;
                    lastHeartbeatAt = now;
                }
            }
            heartbeat(now);
            return;
        }
        synchronized (this) {
            if (mirror.detachedByUser()) {
                state = State.DETACHED;
                return;
            }
            // a failure while connected; or an operator's attach after a detach that did not connect: keep trying
            if (state == State.CONNECTED || state == State.DETACHED) lost(mirror.forker().degradedReason(), now);
            if (state == State.SPLIT_BRAIN || mirror.state() == Mirror.State.SPLIT_BRAIN) {
                state = State.SPLIT_BRAIN;
                return;
            }
            if (now < nextRetryAt) return;
        }
        ResyncRunner r = mirror.resync();
        if (r != null && r.running()) return; // it ends within the I/O timeout now its secondary is gone
        attempt(now);
    }

    private void heartbeat(long now) {
        LinkConfig c = config;
        long hb = c.heartbeat().toMillis();
        Leg s = mirror.secondary();
        String problem = null;
        if (s == null) {
            problem = "secondary leg missing";
        } else if (!s.store().healthy()) {
            problem = "connection to the secondary is broken";
        } else if (hb > 0 && now - lastHeartbeatAt >= hb) {
            lastHeartbeatAt = now;
            try {
                // 512 bytes of its superblock slot: an NBD read, bounded by the store's I/O timeout
                s.store().read(0, ByteBuffer.allocate(512));
            } catch (IOException | RuntimeException e) {
                problem = "heartbeat failed: " + e.getMessage();
            }
        }
        if (problem != null && mirror.forker().secondaryOnline()) {
            mirror.forker().degrade("secondary lost: " + problem);
            synchronized (this) {
                lost(mirror.forker().degradedReason(), clock.getAsLong());
            }
        }
    }

    /** Caller holds the lock. */
    private void lost(String reason, long now) {
        if (state == State.RECONNECTING) return;
        state = State.RECONNECTING;
        outages++;
        // a connection that did not last retry-max is a flap: the backoff goes on growing from where
        // it was (a secondary that accepts the attach but fails every resync is not retried in a tight loop)
        if (now - connectedAt > backoff.maxMillis()) attempts = 0;
        downSince = now;
        lastError = reason;
        lastErrorAt = now;
        nextRetryAt = now + backoff.delay(attempts);
        log.accept("secondary lost (" + reason + "); reconnecting, policy " + config.policy().lower());
    }

    private void attempt(long now) {
        LinkConfig c = config;
        try {
            if (c.policy() == ResyncPolicy.AUTO) {
                mirror.attach(c.resyncRate(), false);
                synchronized (this) {
                    state = State.CONNECTED;
                    reconnects++;
                    attempts++;
                    connectedAt = clock.getAsLong();
                    lastHeartbeatAt = connectedAt;
                }
                log.accept("secondary back after " + (now - downSince) + " ms: attached, resync started");
            } else {
                String what = mirror.probeSecondary();
                synchronized (this) {
                    if (state != State.REACHABLE) log.accept("secondary reachable again (" + what + "); waiting for 'mirrorctl attach' (policy manual)");
                    state = State.REACHABLE;
                    reachable = what;
                    nextRetryAt = clock.getAsLong() + c.retryMax().toMillis();
                }
            }
        } catch (SplitBrainException e) {
            synchronized (this) {
                state = State.SPLIT_BRAIN;
                lastError = e.getMessage();
                lastErrorAt = clock.getAsLong();
            }
            log.accept("secondary back but " + e.getMessage());
        } catch (IOException | RuntimeException e) {
            synchronized (this) {
                if (e instanceof MetadataException) {
                    lastError = "the secondary answers but is refused: " + e.getMessage();
                } else {
                    lastError = String.valueOf(e.getMessage());
                }
                lastErrorAt = clock.getAsLong();
                if (state == State.REACHABLE) state = State.RECONNECTING;
                nextRetryAt = clock.getAsLong() + backoff.delay(attempts);
                attempts++;
            }
        }
    }

    @Override
    public void close() {
        stop = true;
        synchronized (this) {
            notifyAll();
        }
        try {
            thread.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
