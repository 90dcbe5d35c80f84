package org.ublkmirror.track;

import java.io.Closeable;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * Records tracking commands in a {@link TrackingLog} and persists it to a list of
 * {@link LogStore}s: the first is the local copy, the others are shipped copies (the "second
 * location" that survives the loss of the primary host).
 *
 * <p>{@link #track} does no I/O: it marks the blocks in memory and remembers the highest tag.
 * {@link #persist} is the group commit: one encode, then a write to every store. What it
 * guarantees: every command whose {@code track()} returned {@code TRACKED} before
 * {@code persist()} was called is in the record written; the record's covered tag (and the
 * return value) is the highest tag tracked before the snapshot. If the engine calls
 * {@code track()} from several threads with tags out of order, a lower tag still inside
 * another thread's {@code track()} may be missing from that record although its tag is below the
 * covered tag: the engine retires a tag-table entry only for writes whose {@code track()} had
 * returned before it called {@code persist()}.
 *
 * <p>A failing shipped store does not fail the persist: the error is kept in
 * {@link #shipErrors()} and the store is written again by the next persist (which always
 * writes the newest record). A failing local store fails the persist (after the shipped
 * copies were still attempted) and the durable covered tag does not advance.
 *
 * <p>Thread safety: {@code track}, {@code clear}, {@code persist} may be called from any threads
 * at once. A snapshot is encoded under the log's lock, so track() waits for at most one encode.
 */
public final class Tracker implements Closeable {
    private final TrackingLog log;
    private final List<LogStore> stores;
    private final String loadReport;
    private final Object persistLock = new Object();

    // guarded by the log's monitor
    private long maxTag;
    private long changes;

    // guarded by persistLock
    private long seq;
    private long persistedChanges = -1;

    private volatile long durableCoveredTag;
    private volatile List<String> shipErrors = List.of();
    private volatile String lastRejection;
    private volatile String lastAutoPersistError;
    private volatile boolean closed;
    private final AtomicLong rejected = new AtomicLong();
    private ScheduledExecutorService auto;

    /** A tracker for {@code log} (new, or already loaded), persisting to {@code stores} (local first). */
    public Tracker(TrackingLog log, List<LogStore> stores) {
        this(log, stores, "new tracking log");
    }

    private Tracker(TrackingLog log, List<LogStore> stores, String loadReport) {
        this.log = Objects.requireNonNull(log, "log");
        if (stores.isEmpty()) {
            throw new IllegalArgumentException("a tracker needs at least one log store (the local copy)");
        }
        this.stores = List.copyOf(stores);
        this.loadReport = loadReport;
        synchronized (log) {
            this.maxTag = log.coveredTag();
            this.seq = log.sequence();
        }
        this.durableCoveredTag = log.coveredTag();
    }

    /**
     * Loads the newest valid record: from the local store (the first) if it has a valid one,
     * else from the first shipped copy that has; {@link #loadReport()} says which and why.
     * A record of another volume is not used. If no store holds any record, the log comes from
     * {@code ifNone} (null: fail). If records exist but none is valid, throws
     * {@link CorruptLogException} listing each store's problem.
     *
     * @param expectedVolume the volume the log must belong to, or null to accept any
     */
    public static Tracker load(List<LogStore> stores, UUID expectedVolume, Supplier<TrackingLog> ifNone) throws IOException {
        if (stores.isEmpty()) {
            throw new IllegalArgumentException("a tracker needs at least one log store (the local copy)");
        }
        List<String> problems = new ArrayList<>();
        boolean anyRecord = false;
        for (int i = 0; i < stores.size(); i++) {
            LogStore s = stores.get(i);
            String which = (i == 0 ? "local copy " : "shipped copy ") + s.describe();
            byte[] rec;
            try {
                rec = s.readLatest();
            } catch (IOException e) {
                problems.add(which + ": unreadable: " + e.getMessage());
                continue;
            }
            if (rec == null) {
                problems.add(which + ": missing");
                continue;
            }
            anyRecord = true;
            TrackingLog log;
            try {
                log = TrackingLogFormat.decode(rec);
            } catch (CorruptLogException e) {
                problems.add(which + ": " + e.getMessage());
                continue;
            }
            if (expectedVolume != null && !expectedVolume.equals(log.volumeUuid())) {
                problems.add(which + ": belongs to volume " + log.volumeUuid() + ", not " + expectedVolume);
                continue;
            }
            String report = "loaded tracking log seq " + log.sequence() + " from " + which;
            if (i > 0) {
                report += " because " + String.join("; ", problems) + "; the local copy is rewritten at the next persist";
            }
            return new Tracker(log, stores, report);
        }
        if (!anyRecord && ifNone != null) {
            return new Tracker(ifNone.get(), stores, "no tracking log found (" + String.join("; ", problems) + "); started a new one");
        }
        String msg = "no valid tracking log: " + String.join("; ", problems);
        if (anyRecord) {
            throw new CorruptLogException(msg);
        }
        throw new IOException(msg);
    }

    /** Where the log came from: "new", or which copy was loaded and why. */
    public String loadReport() {
        return loadReport;
    }

    public TrackingLog log() {
        return log;
    }

    public List<LogStore> stores() {
        return stores;
    }

    /** Marks the command's blocks dirty at its time. No I/O. */
    public TrackStatus track(TrackingCommand cmd) {
        String why;
        if (closed) {
            why = "tracker is closed";
        } else if (cmd.objectId() != log.objectId()) {
            why = "tracking command for object " + cmd.objectId() + " sent to the tracker of object " + log.objectId();
        } else {
            synchronized (log) {
                why = log.checkRange(cmd.startBlock(), cmd.blockCount());
                if (why == null) {
                    log.mark(cmd.startBlock(), cmd.blockCount(), cmd.timeMillis());
                    if (cmd.tag() > maxTag) {
                        maxTag = cmd.tag();
                    }
                    changes++;
                    return TrackStatus.TRACKED;
                }
            }
        }
        lastRejection = "tag " + cmd.tag() + ": " + why;
        rejected.incrementAndGet();
        return TrackStatus.REJECTED;
    }

    /** Why the latest REJECTED answer was given, or null. */
    public String lastRejection() {
        return lastRejection;
    }

    public long rejectedCount() {
        return rejected.get();
    }

    /** Resync copied these blocks: they are clean in every epoch. */
    public void clear(long startBlock, long blockCount) {
        synchronized (log) {
            log.clear(startBlock, blockCount);
            changes++;
        }
    }

    /** See {@link TrackingLog#clearThrough}. */
    public void clearThrough(long startBlock, long blockCount, int maxEpochId) {
        synchronized (log) {
            log.clearThrough(startBlock, blockCount, maxEpochId);
            changes++;
        }
    }

    /** See {@link TrackingLog#rollEpoch()}. */
    public int rollEpoch() {
        synchronized (log) {
            changes++;
            return log.rollEpoch();
        }
    }

    /**
     * Group commit: encodes the log once and writes it to every store. Returns the covered tag
     * now durable in the local store.
     *
     * @throws IOException if the local store failed (shipped copies were still attempted)
     */
    public long persist() throws IOException {
        synchronized (persistLock) {
            byte[] rec;
            long covered;
            long changesAtSnapshot;
            long thisSeq = seq + 1;
            synchronized (log) {
                covered = maxTag;
                log.setCoveredTag(covered);
                rec = TrackingLogFormat.encode(log, thisSeq);
                changesAtSnapshot = changes;
            }
            seq = thisSeq;
            IOException local = null;
            List<String> errors = new ArrayList<>();
            for (int i = 0; i < stores.size(); i++) {
                LogStore s = stores.get(i);
                try {
                    s.write(rec);
                } catch (IOException | RuntimeException e) {
                    if (i == 0) {
                        local = e instanceof IOException io ? io : new IOException(e);
                    } else {
                        errors.add("shipping tracking log seq " + thisSeq + " to " + s.describe() + " failed: " + e.getMessage()
                                + " (retried at the next persist)");
                    }
                }
            }
            shipErrors = List.copyOf(errors);
            if (local != null) {
                throw new IOException("writing tracking log seq " + thisSeq + " to the local copy " + stores.get(0).describe()
                        + " failed: " + local.getMessage(), local);
            }
            log.setSequence(thisSeq);
            durableCoveredTag = covered;
            persistedChanges = errors.isEmpty() ? changesAtSnapshot : -1;
            return covered;
        }
    }

    /** Persists only if something changed since the last fully successful persist. */
    public boolean persistIfChanged() throws IOException {
        long now;
        synchronized (log) {
            now = changes;
        }
        synchronized (persistLock) {
            if (now == persistedChanges) {
                return false;
            }
        }
        persist();
        return true;
    }

    /** Errors of the shipped copies at the latest persist; empty when every copy was written. */
    public List<String> shipErrors() {
        return shipErrors;
    }

    /** The covered tag of the newest record in the local store. */
    public long coveredTag() {
        return durableCoveredTag;
    }

    /** The highest tag tracked so far (not necessarily persisted). */
    public long maxTrackedTag() {
        synchronized (log) {
            return maxTag;
        }
    }

    /** The sequence number of the latest record written (or loaded). */
    public long sequence() {
        synchronized (persistLock) {
            return seq;
        }
    }

    /** Persists every {@code periodMillis} on a daemon thread, when something changed. */
    public synchronized void startAutoPersist(long periodMillis) {
        if (periodMillis <= 0) {
            throw new IllegalArgumentException("auto-persist period must be positive, got " + periodMillis);
        }
        if (closed) {
            throw new IllegalStateException("tracker is closed");
        }
        if (auto != null) {
            auto.shutdown(); // no interrupt: a persist in progress on a FileChannel would close it
        }
        auto = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "tracking-log-persister");
            t.setDaemon(true);
            return t;
        });
        auto.scheduleWithFixedDelay(() -> {
            try {
                persistIfChanged();
                lastAutoPersistError = null;
            } catch (Throwable e) {
                lastAutoPersistError = e.getMessage();
            }
        }, periodMillis, periodMillis, TimeUnit.MILLISECONDS);
    }

    /** The error of the latest background persist, or null if it succeeded. */
    public String lastAutoPersistError() {
        return lastAutoPersistError;
    }

    /** Stops the background persister and persists what changed since the last persist. */
    @Override
    public void close() throws IOException {
        ScheduledExecutorService a;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            a = auto;
            auto = null;
        }
        if (a != null) {
            a.shutdown();
            try {
                a.awaitTermination(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        persistIfChanged();
    }
}
