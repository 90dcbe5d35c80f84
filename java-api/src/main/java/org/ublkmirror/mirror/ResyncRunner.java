package org.ublkmirror.mirror;

import org.ublkmirror.resync.Extent;
import org.ublkmirror.resync.Extents;
import org.ublkmirror.resync.Progress;
import org.ublkmirror.resync.RateLimiter;
import org.ublkmirror.resync.Resync;
import org.ublkmirror.resync.WindowControl;
import org.ublkmirror.resync.ResyncListener;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.List;

/**
 * Drives resync passes until the tracking log is empty: a pass copies the dirty set it found
 * when it began; writes tracked meanwhile (one that decided "secondary offline" just before the
 * attach) are found by the next pass. A copied extent leaves the log only when a flush of the
 * secondary covers it (at the checkpoint after it, {@link Tracking.PendingClears}); every
 * checkpoint then persists the log, so an interrupted resync resumes where it stopped.
 */
public final class ResyncRunner {
    private final Mirror mirror;
    private final RateLimiter limiter;
    private volatile Resync current;
    private volatile boolean cancelled;
    private volatile Throwable failure;
    private volatile boolean done;
    private long totalBlocks;
    private long copiedBefore;
    private long passes;
    private final long startMillis = System.currentTimeMillis();
    private Thread thread;

    ResyncRunner(Mirror mirror, long rateBytesPerSecond) {
        this.mirror = mirror;
        this.limiter = new RateLimiter(rateBytesPerSecond);
    }

    void start() {
        thread = new Thread(this::run, "resync-" + mirror.config().name());
        thread.setDaemon(true);
        thread.start();
    }

    private void run() {
        try {
            Tracking tr = mirror.tracking();
            while (!cancelled) {
                var dirty = tr.log().dirty();
                long n = dirty.getLongCardinality();
                if (n == 0) break;
                synchronized (this) {
                    totalBlocks = copiedBefore + n;
                    passes++;
                }
                List<Extent> extents = Extents.of(dirty);
                int w = mirror.options().resyncWindow;
                boolean adaptive = mirror.options().resyncAdaptive;
                control = controlForPass(control, w, adaptive);
                // copied extents wait here until a flush of the secondary covers them
                Tracking.PendingClears pending = tr.watchResync();
                Resync r = new Resync(mirror.primary().data(), mirror.secondary().data(), mirror.forker().rangeLock(),
                        extents, limiter, new ResyncListener() {
                            @Override
                            public void onCopied(Extent e) {
                                pending.add(e.start(), e.count());
                            }

                            @Override
                            public void barrier() {
                                pending.seal();
                            }

                            @Override
                            public void checkpoint() throws IOException {
                                pending.apply(); // the secondary flushed them: durable there
                                tr.persist();
                            }
                        }, Resync.Options.DEFAULT.withWindow(w).withAdaptiveWindow(adaptive)
                        // -Dublkmirror.resync.stallingCheckpoints=true: every checkpoint drains the window and
                        // the copies wait for its flush (the A/B baseline of bench/net-resync.sh --flush)
                        .withPipelinedCheckpoints(!Boolean.getBoolean("ublkmirror.resync.stallingCheckpoints")))
                        .withWindowControl(control);
                current = r;
                if (cancelled) r.cancel(); // cancel() ran between the passes
                try {
                    r.run();
                } finally {
                    tr.unwatch(pending);
                }
                Progress p = r.progress();
                synchronized (this) {
                    // the pass's blocks move into copiedBefore and the pass stops counting in the
                    // same step: copiedBlocks() must not count them twice (it showed 200%)
                    copiedBefore += p.blocksDone();
                    current = null;
                    addTiming(r.timing(), p.checkpoints());
                }
                mirror.addResynced(p.blocksDone());
                if (p.state() != Progress.State.DONE) {
                    if (p.failure() != null) {
                        failure = p.failure();
                        // the secondary went away mid-resync: what it took since the last checkpoint may
                        // not be durable there (its host may lose power too); those blocks were never
                        // cleared from the log (their clears were pending), so the next attach copies
                        // them again (the documented superset)
                        mirror.forker().degrade("secondary failed during resync: " + p.failure().getMessage());
                    }
                    return;
                }
                if (!mirror.forker().secondaryOnline()) return;
            }
            if (!cancelled && mirror.forker().secondaryOnline() && tr.dirtyCount() == 0) {
                tr.persist();
                mirror.resyncComplete();
            }
        } catch (Throwable t) {
            failure = t;
        } finally {
            endMillis = System.currentTimeMillis();
            done = true;
        }
    }

    /**
     * The window control of the next copy pass: one for every pass of a resync, so what the
     * window learned of the link stays; when the operator changed the window or its mode since
     * the last pass ({@link Mirror#setResyncWindow(int)} changes only the options), the same
     * control is reconfigured, as a change during a pass does.
     */
    static WindowControl controlForPass(WindowControl current, int window, boolean adaptive) {
        if (current == null) return adaptive ? WindowControl.adaptive(window) : WindowControl.fixed(window);
        if (current.max() != window || current.isAdaptive() != adaptive) current.reconfigure(window, adaptive);
        return current;
    }

    public void setRate(long bytesPerSecond) {
        limiter.setRate(bytesPerSecond);
    }

    public boolean running() {
        return !done;
    }

    public boolean succeeded() {
        return done && failure == null && !cancelled && mirror.tracking().dirtyCount() == 0;
    }

    public Throwable failure() {
        return failure;
    }

    public synchronized long totalBlocks() {
        return totalBlocks;
    }

    public synchronized long copiedBlocks() {
        Resync r = current;
        return copiedBefore + (r != null ? r.progress().blocksDone() : 0);
    }

    public long startMillis() {
        return startMillis;
    }

    // the finished passes' timing, summed (guarded by this)
    private long wallNs, readNs, writeNs, drainNs, flushNs, persistNs, waitNs, checkpoints, backgroundCheckpoints;
    private int timedPasses, window;
    private volatile WindowControl control; // the copy passes' window (only the runner thread sets it; status reads it)
    private WindowControl.Stats windowStats; // cumulative over the passes (they share one control)
    private boolean pipelined;
    private volatile long endMillis;

    private void addTiming(Resync.Timing t, long cps) {
        wallNs += t.wall();
        readNs += t.read();
        writeNs += t.write();
        drainNs += t.drain();
        flushNs += t.flush();
        persistNs += t.persist();
        checkpoints += cps;
        waitNs += t.waited();
        backgroundCheckpoints += t.backgroundCheckpoints();
        window = t.window();
        windowStats = t.windowStats();
        pipelined = t.pipelined();
        timedPasses++;
    }

    /**
     * Where the resync's time went, inside the daemon (no CLI or JVM start in it): {@code ms} from
     * the attach to the end (generations updated, tracking log persisted), {@code copy_ms} the copy
     * passes' own wall time, the bytes and MB/s over {@code ms}, the window, checkpoints (how many
     * ran beside the copies: pipelined), the time the copy loop waited for the window to empty
     * ({@code checkpoint_drain_ms}: stalling checkpoints and the end of each pass) and for a
     * pipelined checkpoint still running at the next interval ({@code checkpoint_wait_ms}), the
     * checkpoints' flushes and persists summed (beside the copies when pipelined), and the primary
     * reads and secondary writes summed over the copies.
     */
    public synchronized Map<String, Object> report() {
        long end = endMillis != 0 ? endMillis : System.currentTimeMillis();
        long ms = end - startMillis;
        long bytes = copiedBlocks() * mirror.blockSize();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ms", ms);
        m.put("copy_ms", wallNs / 1_000_000);
        m.put("bytes", bytes);
        m.put("mb_per_s", ms > 0 ? Math.round(bytes / 1e3 / ms * 10) / 10.0 : 0.0);
        m.put("passes", (long) timedPasses);
        m.put("window", (long) window);
        WindowControl.Stats ws = windowStats;
        if (ws != null) {
            m.put("window_mode", WindowControl.modeName(ws.adaptive()));
            m.put("window_mean", Math.round(ws.mean() * 10) / 10.0);
            m.put("window_low", (long) ws.lowest());
            m.put("window_high", (long) ws.highest());
            m.put("copy_latency_ms", Math.round(ws.meanLatency() / 1e5) / 10.0);
            m.put("copy_latency_base_ms", Math.round(ws.baseLatency() / 1e5) / 10.0);
            m.put("copy_bytes_low", ws.smallestCopy());
            m.put("copy_bytes_high", ws.largestCopy());
        }
        m.put("checkpoints", checkpoints);
        m.put("pipelined", pipelined);
        m.put("background_checkpoints", backgroundCheckpoints);
        m.put("checkpoint_wait_ms", waitNs / 1_000_000);
        m.put("checkpoint_drain_ms", drainNs / 1_000_000);
        m.put("checkpoint_flush_ms", flushNs / 1_000_000);
        m.put("checkpoint_persist_ms", persistNs / 1_000_000);
        m.put("primary_read_ms_summed", readNs / 1_000_000);
        m.put("secondary_write_ms_summed", writeNs / 1_000_000);
        return m;
    }

    /** The copy passes' window (null before the first pass): its current limit, for status. */
    public WindowControl windowControl() {
        return control;
    }

    public Progress passProgress() {
        Resync r = current;
        return r == null ? null : r.progress();
    }

    public void cancel() {
        cancelled = true;
        Resync r = current;
        if (r != null) r.cancel();
    }

    void cancelAndWait() {
        cancel();
        awaitDone(0);
    }

    /** Waits for the end; timeoutMillis 0 waits forever. True if it ended. */
    public boolean awaitDone(long timeoutMillis) {
        try {
            if (thread != null) thread.join(timeoutMillis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return done;
    }
}
