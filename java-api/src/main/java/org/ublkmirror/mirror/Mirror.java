package org.ublkmirror.mirror;

import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.fork.Forker;
import org.ublkmirror.gateway.NbdStore;
import org.ublkmirror.fork.IntentRecord;
import org.ublkmirror.frontend.BlockTarget;
import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.MetadataException;
import org.ublkmirror.leg.Role;
import org.ublkmirror.leg.Store;
import org.ublkmirror.leg.Stores;
import org.ublkmirror.leg.Superblock;
import org.ublkmirror.leg.WriteSource;
import org.ublkmirror.tags.Tag;
import org.ublkmirror.tags.TagJournal;
import org.ublkmirror.tags.TagRecord;
import org.ublkmirror.tags.TagTable;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.UUID;
import java.util.function.Function;

/**
 * A mirror: two legs, the forker between them, the tracker for outages, resync and verify. The
 * engine every frontend serves ({@link BlockTarget}) and every mirrorctl command drives.
 *
 * <p>Opening a mirror is recovery: the legs are checked against each other (same mirror, same
 * geometry, generations), and if they were not closed cleanly the tag tables are compared and
 * the blocks of unmatched writes copied primary to secondary before any new I/O.
 */
public final class Mirror implements BlockTarget, Closeable {

    /** Knobs for opening; the defaults are what the daemon uses. */
    public static final class Options {
        public UUID bootId = BootId.current();
        /** The intent record's hot set, in regions (4 MiB each by default): 505 regions = about 2 GiB. */
        public int maxActiveRegions = IntentRecord.MAX_REGIONS;
        /** Open the stores; tests pass fault-injecting ones. Null: files at the configured paths. */
        public Function<String, Store> storeOpener;
        /** Start degraded when the secondary cannot be opened, instead of failing. */
        public boolean allowMissingSecondary = true;
        /** Background persistence of the tracking log while degraded, ms (0: only on flush and close). */
        public long trackPersistMillis = 1000;
        /** Clock for the tracking log's times. */
        public java.util.function.LongSupplier clock = System::currentTimeMillis;
        /** How often an idle forker writes its watermark, ms (0: only with writes; tests). */
        public long watermarkTickMillis = 100;
        /** Retry backoff of log shipping to a receiver (--ship-to), ms: doubles from min to max. */
        public long shipBackoffMinMillis = 100, shipBackoffMaxMillis = 5000;
        /** Connection settings for nbd:// legs (timeouts, TLS); null: {@link NbdStore.Options#defaults()}. */
        public NbdStore.Options remote;
        /** Resync copies in flight at once (see docs/resync.md, "The window"); {@link Mirror#setResyncWindow} changes it live. */
        public volatile int resyncWindow = org.ublkmirror.resync.Resync.Options.DEFAULT_WINDOW;
        /** The window follows the copies' latency up to {@link #resyncWindow} (default), or is always that many (docs/resync.md). */
        public volatile boolean resyncAdaptive = true;
    }

    public enum State { MIRRORED, DEGRADED, RESYNCING, SPLIT_BRAIN, CLOSED }

    private final MirrorConfig config;
    private final Options opts;
    private final Leg primary;
    private volatile Leg secondary;
    private final Forker forker;
    private final Tracking tracking;
    private final RecoveryReport recovery;
    private volatile boolean splitBrain;
    private volatile ResyncRunner resync;
    private volatile boolean closed;
    private volatile boolean detachedByUser;
    private final java.util.concurrent.atomic.AtomicLong resyncedBlocks = new java.util.concurrent.atomic.AtomicLong();

    private Mirror(MirrorConfig config, Options opts, Leg primary, Leg secondary, Forker forker, Tracking tracking,
                   RecoveryReport recovery, boolean splitBrain) {
        this.config = config;
        this.opts = opts;
        this.primary = primary;
        this.secondary = secondary;
        this.forker = forker;
        this.tracking = tracking;
        this.recovery = recovery;
        this.splitBrain = splitBrain;
    }

    // ------------------------------------------------------------------ create

    /** Result of {@link #create}. */
    public record Created(UUID volume, long dataBlocks, int blockSize, long primaryBytes, long secondaryBytes) {
    }

    /**
     * Initialises metadata on both legs. Files that do not exist are created sparse, large
     * enough for {@code sizeBytes} of volume plus metadata. A leg that already holds data or
     * metadata is refused unless {@code force}. Nothing is written to either leg unless both
     * pass every check.
     */
    public static Created create(MirrorConfig cfg, long sizeBytes, int blockSize, boolean force,
                                 Function<String, Store> opener) throws IOException {
        return create(cfg, sizeBytes, blockSize, force, opener, Leg.DEFAULT_JOURNAL_BLOCKS, Leg.DEFAULT_REGION_BLOCKS);
    }

    /** As above, with the tag journal's length and the intent region size in blocks. */
    public static Created create(MirrorConfig cfg, long sizeBytes, int blockSize, boolean force,
                                 Function<String, Store> opener, int journalBlocks, int regionBlocks) throws IOException {
        if (sizeBytes < 0 || (sizeBytes > 0 && sizeBytes % blockSize != 0)) {
            throw new IllegalArgumentException("--size " + sizeBytes + " is not a positive multiple of the block size " + blockSize);
        }
        long blocks = sizeBytes / blockSize;
        long storeBytes = blocks > 0 ? Leg.metadataBytes(blocks, journalBlocks) + sizeBytes : 0;
        List<Path> createdFiles = new ArrayList<>();
        Store p = null, s = null;
        try {
            p = openOrCreate(cfg, cfg.primary(), storeBytes, opener, createdFiles);
            s = openOrCreate(cfg, cfg.secondary(), storeBytes, opener, createdFiles);
            for (Store st : new Store[] {p, s}) {
                if (createdFiles.stream().anyMatch(f -> f.toString().equals(st.describe()))) continue;
                String what = Leg.probeContent(st);
                if (what != null && !force) {
                    throw new MetadataException(st.describe() + " already holds " + what
                            + "; refusing to overwrite it (use --force if it is really to be wiped)");
                }
            }
            if (blocks == 0) {
                long bp = Leg.maxDataBlocks(p.size(), blockSize, journalBlocks);
                long bs = Leg.maxDataBlocks(s.size(), blockSize, journalBlocks);
                if (bp != bs) {
                    throw new MetadataException("legs differ in size (" + p.size() + " and " + s.size()
                            + " bytes); give --size to use the same part of both");
                }
                blocks = bp;
            }
            for (Store st : new Store[] {p, s}) {
                long need = Leg.metadataBytes(blocks, journalBlocks) + blocks * blockSize;
                if (st.size() < need) {
                    throw new MetadataException(st.describe() + " is " + st.size() + " bytes, too small for a "
                            + blocks * blockSize + "-byte volume plus metadata (" + need + " bytes needed)");
                }
            }
            UUID volume = UUID.randomUUID();
            long gen = UUID.randomUUID().getMostSignificantBits() | 1;
            Leg.create(p, new Leg.Spec(cfg.name(), volume, Role.PRIMARY, blockSize, blocks, journalBlocks, regionBlocks, gen));
            Leg.create(s, new Leg.Spec(cfg.name(), volume, Role.SECONDARY, blockSize, blocks, journalBlocks, regionBlocks, gen));
            if (cfg.shipDir() != null) {
                Files.deleteIfExists(cfg.shipDir().resolve(Tracking.shippedName(cfg.name())));
            }
            return new Created(volume, blocks, blockSize, p.size(), s.size());
        } catch (IOException | RuntimeException e) {
            closeQuietly(p);
            closeQuietly(s);
            p = s = null;
            for (Path f : createdFiles) Files.deleteIfExists(f); // a failed create leaves nothing behind
            throw e;
        } finally {
            closeQuietly(p);
            closeQuietly(s);
        }
    }

    /**
     * Lays out the storage objects of a mirror that is not running: each object is a range of the
     * volume's blocks ({@code baseBlock}, {@code capacityBlocks}) of which {@code lengthBlocks}
     * exist now; writes past the length extend it up to the capacity. Object 0 is what the
     * frontend serves. Ranges must not overlap. Written to both legs' superblocks.
     */
    public static void defineObjects(MirrorConfig cfg, Function<String, Store> opener, Superblock.StorageObject... objects) throws IOException {
        Store ps = opener != null ? opener.apply(cfg.primary()) : Stores.open(cfg.primary(), remoteOptions(cfg, null, cfg.primary()));
        Store ss = null;
        try {
            Leg p = Leg.open(ps);
            ss = opener != null ? opener.apply(cfg.secondary()) : Stores.open(cfg.secondary(), remoteOptions(cfg, null, cfg.secondary()));
            Leg s = Leg.open(ss);
            checkPair(p, s, cfg);
            long blocks = p.superblock().dataBlocks;
            if (objects.length == 0 || objects.length > Superblock.MAX_OBJECTS) {
                throw new IllegalArgumentException("a mirror holds 1 to " + Superblock.MAX_OBJECTS + " storage objects");
            }
            java.util.Set<Integer> ids = new java.util.HashSet<>();
            for (Superblock.StorageObject o : objects) {
                if (!ids.add(o.id())) throw new IllegalArgumentException("storage object id " + o.id() + " given twice");
                if (o.baseBlock() < 0 || o.capacityBlocks() <= 0 || o.baseBlock() > blocks - o.capacityBlocks()
                        || o.lengthBlocks() < 0 || o.lengthBlocks() > o.capacityBlocks()) {
                    throw new IllegalArgumentException("storage object " + o.id() + " (base " + o.baseBlock() + ", length "
                            + o.lengthBlocks() + ", capacity " + o.capacityBlocks() + ") does not fit the volume of " + blocks + " blocks");
                }
                for (Superblock.StorageObject q : objects) {
                    if (q != o && o.baseBlock() < q.baseBlock() + q.capacityBlocks() && q.baseBlock() < o.baseBlock() + o.capacityBlocks()) {
                        throw new IllegalArgumentException("storage objects " + o.id() + " and " + q.id() + " overlap");
                    }
                }
            }
            if (!ids.contains(0)) throw new IllegalArgumentException("storage object 0 (the one the device serves) is missing");
            p.updateSuperblock(sb -> sb.objects = objects.clone());
            s.updateSuperblock(sb -> sb.objects = objects.clone());
        } finally {
            closeQuietly(ps);
            closeQuietly(ss);
        }
    }

    private static Store openOrCreate(MirrorConfig cfg, String spec, long bytes, Function<String, Store> opener, List<Path> created) throws IOException {
        if (opener != null) return opener.apply(spec);
        if (Stores.isRemote(spec)) return Stores.open(spec, remoteOptions(cfg, null, spec)); // a remote volume exists already: its gateway serves it
        Path path = Path.of(spec);
        if (Files.exists(path)) return FileStore.open(path);
        if (bytes <= 0) {
            throw new java.nio.file.NoSuchFileException(path.toString(), null, "does not exist; give --size to create it");
        }
        Path parent = path.toAbsolutePath().getParent();
        if (parent != null && !Files.isDirectory(parent)) {
            throw new java.nio.file.NoSuchFileException(parent.toString(), null, "directory does not exist");
        }
        FileStore st = FileStore.createSparse(path, bytes);
        created.add(path);
        return st;
    }

    static void closeQuietly(Closeable c) {
        if (c == null) return;
        try {
            c.close();
        } catch (IOException | RuntimeException ignored) {
            // closing on an error path: the first error is the one to report
        }
    }

    // ------------------------------------------------------------------ open = recovery

    /**
     * Opens the mirror: recovery first. A secondary that cannot be reached, or that fails (an I/O
     * error or timeout) at any point of the open, makes a degraded start, as md starts a degraded
     * array and DRBD goes StandAlone: the mirror serves from the primary, tracks every write, and
     * the link monitor reconnects and resyncs by policy. What the secondary might lack is marked
     * dirty first: the repair set of an unclean previous run (the primary's live tags, and the
     * primary's intent regions, since unflushed writes on the unverified secondary are in doubt).
     * Only bad input (a corrupt or foreign secondary) fails the open; with
     * {@link Options#allowMissingSecondary} false every secondary failure does.
     */
    public static Mirror open(MirrorConfig cfg, Options opts) throws IOException {
        Objects.requireNonNull(opts);
        Store ps = openStore(cfg, opts, cfg.primary());
        Leg p = null, s = null;
        try {
            p = Leg.open(ps);
            Superblock psb = p.superblock();
            if (psb.role != Role.PRIMARY) {
                throw new MetadataException(cfg.primary() + " is a " + psb.role.lower() + " leg, not a primary; check --primary/--secondary");
            }
            String sProblem = null;
            Store ss = null;
            try {
                ss = openStore(cfg, opts, cfg.secondary());
                s = Leg.open(ss);
            } catch (MetadataException e) {
                closeQuietly(ss);
                throw e; // a wrong or corrupt secondary is bad input, not an outage
            } catch (IOException e) {
                closeQuietly(ss);
                if (!opts.allowMissingSecondary) throw e;
                sProblem = e.getMessage();
            }
            if (s != null) checkPair(p, s, cfg);

            Tracking tracking = Tracking.open(cfg, p, opts);
            while (true) {
                try {
                    return recover(cfg, opts, p, psb, s, sProblem, tracking);
                } catch (SecondaryFailed e) {
                    // the secondary answered, then failed during the open: start as if it had not answered.
                    // Nothing the attempt did is lost: its secondary writes are covered by the repair set
                    // the retry marks dirty, and its primary superblock update is made again.
                    if (!opts.allowMissingSecondary) throw e.io();
                    closeQuietly(s);
                    s = null;
                    sProblem = e.getMessage();
                }
            }
        } catch (IOException | RuntimeException e) {
            closeQuietly(p);
            closeQuietly(s);
            if (p == null) closeQuietly(ps);
            throw e;
        }
    }

    /** An I/O failure of the secondary during open (not bad input): the open goes on degraded. */
    private static final class SecondaryFailed extends IOException {
        SecondaryFailed(IOException cause) {
            super(cause.getMessage(), cause);
        }

        IOException io() {
            return (IOException) getCause();
        }
    }

    private interface SecondaryCall<T> {
        T call() throws IOException;
    }

    /** A call to the secondary during open: its I/O failures become {@link SecondaryFailed}; bad metadata stays bad input. */
    private static <T> T onSecondary(SecondaryCall<T> c) throws IOException {
        try {
            return c.call();
        } catch (MetadataException e) {
            throw e;
        } catch (IOException e) {
            throw new SecondaryFailed(e);
        }
    }

    /**
     * Recovery with the legs as they are ({@code s} null: the secondary is unreachable). Computed
     * from {@code psb}, the primary's superblock as the previous run left it, so a second attempt
     * (after the secondary failed in the first) decides the same way.
     */
    private static Mirror recover(MirrorConfig cfg, Options opts, Leg p, Superblock psb, Leg s, String sProblem,
                                  Tracking tracking) throws IOException {
        Superblock ssb = s != null ? s.superblock() : null;
        boolean split = false;
        boolean sInSync = ssb != null && ssb.currentGen == psb.currentGen && psb.bitmapGen == 0;
        boolean sBehind = ssb != null && !sInSync && (ssb.currentGen == psb.bitmapGen || ssb.currentGen == psb.currentGen);
        if (ssb != null && !sInSync && !sBehind) {
            split = true;
        }
        // the previous run ended with the secondary in sync as far as the primary knows (no outage on record)
        boolean wasInSync = psb.bitmapGen == 0;

        // ---- crash repair: compare tag tables; after power loss add the intent regions
        TagTable pt = TagJournal.scan(p);
        Leg sLeg = s;
        TagTable st = s != null ? onSecondary(() -> TagJournal.scan(sLeg)) : null;
        boolean dirty = !psb.clean() || (sInSync && !ssb.clean());
        String cause = "clean";
        long repaired = 0, markedDirty = 0, intentRegions = 0;
        if (dirty) {
            // a secondary that was behind sat out the last run: its flags are older news, the log covers it
            boolean sameBoot = psb.bootId.equals(opts.bootId)
                    && (!sInSync || ssb.clean() || ssb.bootId.equals(opts.bootId));
            cause = sameBoot ? "daemon-crash" : "power-loss";
            Roaring64NavigableMap repair = new Roaring64NavigableMap();
            // the primary journals every write; a secondary that was behind holds only entries from
            // before its outage, which the tracking log already covers
            for (TagTable t : st == null || !sInSync ? List.of(pt) : List.of(pt, st)) {
                for (TagRecord r : t.live.values()) {
                    Superblock.StorageObject o = psb.object(r.objectId());
                    long base = o != null ? o.baseBlock() : 0;
                    long end = Math.min(base + r.startBlock() + r.blockCount(), psb.dataBlocks);
                    if (base + r.startBlock() < end) repair.addRange(base + r.startBlock(), end);
                }
            }
            // the intent regions: after power loss (unflushed writes on either leg may be gone), and
            // whenever a secondary that was in sync cannot be checked now: what it had not flushed when
            // the run ended is in doubt (its host may have lost power too), as when a secondary fails
            // under a running mirror (Forker.degrade)
            boolean unverified = s == null && wasInSync;
            if (!sameBoot || unverified) {
                for (Leg l : s == null || !sInSync ? List.of(p) : List.of(p, s)) {
                    IntentRecord ir = l == p ? IntentRecord.read(l) : onSecondary(() -> IntentRecord.read(l));
                    if (ir == null) continue;
                    for (long r : ir.regions) {
                        intentRegions++;
                        long a = r * ir.regionBlocks, b = Math.min(a + ir.regionBlocks, psb.dataBlocks);
                        if (a < b) repair.addRange(a, b);
                    }
                }
            }
            if (sInSync && !split) {
                repaired = copyBlocks(p, s, repair);
            } else {
                markedDirty = repair.getLongCardinality();
                tracking.markAll(repair);
            }
        }
        RecoveryReport report = new RecoveryReport(cause, pt.live.size(), st == null ? 0 : st.live.size(),
                repaired, markedDirty, intentRegions);

        long lastSeq = Math.max(psb.lastTag, ssb == null ? 0 : ssb.lastTag);
        lastSeq = Math.max(lastSeq, Tag.seq(pt.maxTag.getOrDefault(cfg.hostId(), 0L)));
        if (st != null) lastSeq = Math.max(lastSeq, Tag.seq(st.maxTag.getOrDefault(cfg.hostId(), 0L)));
        // continue well past anything a torn journal might have hidden
        lastSeq += 1024;

        UUID boot = opts.bootId;
        p.updateSuperblock(sb -> {
            sb.flags &= ~Superblock.FLAG_CLEAN;
            sb.bootId = boot;
            sb.hostId = cfg.hostId();
        });
        boolean online = sInSync && !split;
        if (online) {
            onSecondary(() -> s.updateSuperblock(sb -> {
                sb.flags &= ~Superblock.FLAG_CLEAN;
                sb.bootId = boot;
                sb.hostId = cfg.hostId();
            }));
        }
        if (!online && psb.bitmapGen == 0 && ssb != null && !split) {
            // secondary present but behind without a recorded outage cannot happen; treat as split brain
            split = true;
        }
        String startReason = s == null ? "secondary unreachable at start: " + sProblem : null;
        if (startReason != null && wasInSync) {
            // the outage starts now and is on record before any write is taken: the primary moves to
            // a new generation and remembers the secondary's, so a later open (after a crash or a clean
            // stop while degraded) knows the secondary is behind and resyncs from the log
            Forker.recordOutageStart(p);
        }
        tracking.persist(); // repaired-or-marked state is durable before new writes
        Forker f = new Forker(p, s, online, pt, st, cfg.hostId(), lastSeq, tracking,
                reason -> { }, opts.maxActiveRegions, opts.watermarkTickMillis);
        if (startReason != null) f.startedDegraded(startReason);
        // the repair is durable (secondary flushed, or the log persisted): retire what it resolved,
        // so a second crash does not repair the same blocks again
        f.writeWatermark();
        Mirror m = new Mirror(cfg, opts, p, s, f, tracking, report, split);
        tracking.startAutoPersist(f, opts.trackPersistMillis);
        return m;
    }

    /**
     * A leg's store through the options' opener, or {@link Stores#open} (nbd:// with the options'
     * connection settings, nbds:// with the configuration's TLS files read now: at every open,
     * attach and reconnect).
     */
    static Store openStore(MirrorConfig cfg, Options opts, String spec) throws IOException {
        if (opts.storeOpener != null) {
            try {
                return opts.storeOpener.apply(spec);
            } catch (java.io.UncheckedIOException e) {
                throw e.getCause();
            }
        }
        return Stores.open(spec, remoteOptions(cfg, opts.remote, spec));
    }

    /**
     * Connection settings for the leg {@code spec}: {@code base} (null: the defaults), with the
     * TLS context from the configuration's files when {@code spec} is its nbds:// secondary.
     */
    static NbdStore.Options remoteOptions(MirrorConfig cfg, NbdStore.Options base, String spec) throws IOException {
        NbdStore.Options o = base != null ? base : NbdStore.Options.defaults();
        if (Stores.isRemote(spec) && spec.equals(cfg.secondary()) && cfg.secondaryNeedsTls() && cfg.secondaryTls() != null) {
            o = cfg.secondaryTls().options(o);
        }
        return o;
    }

    /** The two legs must be of one mirror, with one geometry. */
    static void checkPair(Leg p, Leg s, MirrorConfig cfg) throws MetadataException {
        Superblock a = p.superblock(), b = s.superblock();
        if (!a.volumeUuid.equals(b.volumeUuid)) {
            throw new MetadataException(cfg.secondary() + " belongs to another mirror (volume " + b.volumeUuid
                    + ", expected " + a.volumeUuid + "); give the right --secondary or recreate it with 'mirrorctl create --force'");
        }
        if (b.role != Role.SECONDARY) {
            throw new MetadataException(cfg.secondary() + " is a " + b.role.lower() + " leg, not a secondary; check --primary/--secondary");
        }
        if (a.blockSize != b.blockSize || a.dataBlocks != b.dataBlocks) {
            throw new MetadataException("legs differ in geometry: primary " + a.dataBlocks + " x " + a.blockSize
                    + " bytes, secondary " + b.dataBlocks + " x " + b.blockSize + " bytes; recreate the secondary to match");
        }
    }

    /** Copies the given blocks primary to secondary, in sorted coalesced extents; returns blocks copied. */
    static long copyBlocks(Leg p, Leg s, Roaring64NavigableMap blocks) throws IOException {
        int bs = p.superblock().blockSize;
        int maxRun = Math.max(1, (1 << 20) / bs);
        ByteBuffer buf = ByteBuffer.allocateDirect(maxRun * bs);
        long copied = 0;
        org.roaringbitmap.longlong.LongIterator it = blocks.getLongIterator();
        long start = -1, len = 0;
        while (true) {
            boolean has = it.hasNext();
            long b = has ? it.next() : -1;
            if (has && start >= 0 && b == start + len && len < maxRun) {
                len++;
                continue;
            }
            if (start >= 0) {
                buf.clear().limit((int) (len * bs));
                p.data().read(start, buf);
                buf.flip();
                long at = start;
                onSecondary(() -> {
                    s.data().write(at, buf, false);
                    return null;
                });
                copied += len;
            }
            if (!has) break;
            start = b;
            len = 1;
        }
        if (copied > 0) onSecondary(() -> {
            s.data().flush();
            return null;
        });
        return copied;
    }

    // ------------------------------------------------------------------ BlockTarget

    @Override
    public long sizeBytes() {
        Superblock.StorageObject o = primary.object(0);
        return o.lengthBlocks() * blockSize();
    }

    @Override
    public int blockSize() {
        return primary.blockSize();
    }

    private long toBlock(long offset, long len) {
        int bs = blockSize();
        if (offset % bs != 0 || len % bs != 0) {
            throw new IllegalArgumentException("I/O at " + offset + " of " + len + " bytes is not aligned to the "
                    + bs + "-byte block size");
        }
        return offset / bs;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        forker.read(0, toBlock(offset, dst.remaining()), dst);
    }

    /**
     * Reads come from the primary alone ({@link Forker#read}), so a frontend may read the
     * primary's file itself when it is a plain local file (not a remote or decorated store):
     * the volume starts at the data area plus the object's base, for the object's length now.
     */
    @Override
    public DirectRead directRead() throws IOException {
        if (!(primary.data().store() instanceof org.ublkmirror.leg.FileStore fs)) return null;
        Superblock.StorageObject o = primary.object(0);
        long base = primary.data().offset() + o.baseBlock() * blockSize();
        return new DirectRead(fs.openReadOnlyDescriptor(), base, o.lengthBlocks() * blockSize(), fs.describe());
    }

    @Override
    public boolean writeWouldNotWait(long offset, long length) {
        int bs = blockSize();
        if (offset % bs != 0 || length % bs != 0 || length <= 0) return false;
        return forker.writeWouldNotWait(0, offset / bs, length / bs);
    }

    @Override
    public void write(long offset, ByteBuffer src, boolean fua) throws IOException {
        forker.write(0, toBlock(offset, src.remaining()), src, fua);
    }

    @Override
    public void write(long offset, WriteSource src, boolean fua) throws IOException {
        forker.write(0, toBlock(offset, src.length()), src, fua);
    }

    @Override
    public WriteSource.Pending startWrite(long offset, WriteSource src) throws IOException {
        return forker.startWrite(0, toBlock(offset, src.length()), src);
    }

    @Override
    public void flush() throws IOException {
        forker.flush();
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        forker.discard(0, toBlock(offset, length), length / blockSize());
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        discard(offset, length); // a discarded block reads as zeroes on both legs
    }

    /** Block-level access to any storage object of the mirror. */
    public Forker forker() {
        return forker;
    }

    // ------------------------------------------------------------------ outage and return

    /** Takes the secondary offline: tracking starts (mdadm --fail, drbdadm disconnect). */
    public void detach() {
        detachedByUser = true;
        if (resync != null) resync.cancel();
        forker.degrade("detached by the user", true);
    }

    /** True from a user's {@link #detach} until the next {@link #attach}: no automatic reconnect then. */
    public boolean detachedByUser() {
        return detachedByUser;
    }

    /**
     * Checks that the secondary answers and would be accepted by {@link #attach}, without attaching:
     * opens its store, reads its superblock, checks it belongs to this mirror and that its
     * generation is known (not split brain), closes it. Returns a one-line description.
     * Serialized with {@link #attach}: a secondary that takes one writer at a time (our gateway)
     * would refuse whichever of the two connected second, so an operator's attach waits for a
     * probe of the link monitor's to close its connection, and a probe after an attach finds the
     * secondary attached and does not connect.
     */
    public synchronized String probeSecondary() throws IOException {
        if (closed) throw new IllegalStateException("mirror is closed");
        if (forker.secondaryOnline()) return "attached";
        Store ss = openStore(config, opts, config.secondary());
        try {
            Leg s = Leg.open(ss);
            checkPair(primary, s, config);
            Superblock psb = primary.superblock(), ssb = s.superblock();
            boolean known = ssb.currentGen == psb.currentGen || ssb.currentGen == psb.bitmapGen;
            if (!known || splitBrain) {
                throw new SplitBrainException("split brain: the secondary was written independently (generation "
                        + Long.toHexString(ssb.currentGen) + ", primary " + Long.toHexString(psb.currentGen)
                        + "); run 'mirrorctl attach --discard-secondary' to overwrite it from the primary");
            }
            return ss.describe() + " answers (generation " + Long.toHexString(ssb.currentGen) + ")";
        } finally {
            closeQuietly(ss);
        }
    }

    /**
     * Brings the secondary back and starts the resync (mdadm --re-add, drbdadm connect).
     * Refuses on split brain unless {@code discardSecondary}, which resyncs every block.
     */
    public synchronized ResyncRunner attach(long rateBytesPerSecond, boolean discardSecondary) throws IOException {
        if (closed) throw new IllegalStateException("mirror is closed");
        if (resync != null && resync.running()) return resync;
        detachedByUser = false;
        Leg s = secondary;
        if (s != null && !s.store().healthy()) {
            // the connection that failed stays failed (NbdStore never reconnects): open a new one
            closeQuietly(s);
            secondary = s = null;
        }
        if (s == null) {
            Store ss = openStore(config, opts, config.secondary());
            try {
                s = Leg.open(ss);
                checkPair(primary, s, config);
            } catch (IOException | RuntimeException e) {
                closeQuietly(ss);
                throw e;
            }
            secondary = s;
        }
        Superblock psb = primary.superblock(), ssb = s.superblock();
        boolean known = ssb.currentGen == psb.currentGen || ssb.currentGen == psb.bitmapGen;
        if ((!known || splitBrain) && !discardSecondary) {
            splitBrain = true;
            throw new SplitBrainException("split brain: the secondary was written independently (generation "
                    + Long.toHexString(ssb.currentGen) + ", primary " + Long.toHexString(psb.currentGen)
                    + "); run 'mirrorctl attach --discard-secondary' to overwrite it from the primary");
        }
        if (discardSecondary && (!known || splitBrain)) {
            tracking.markAll(fullRange(psb.dataBlocks));
        }
        splitBrain = false;
        UUID boot = opts.bootId;
        s.updateSuperblock(sb -> {
            sb.flags &= ~Superblock.FLAG_CLEAN;
            sb.bootId = boot;
        });
        TagTable st = TagJournal.scan(s);
        forker.reattach(s, st);
        ResyncRunner r = new ResyncRunner(this, rateBytesPerSecond);
        resync = r;
        r.start();
        return r;
    }

    static Roaring64NavigableMap fullRange(long blocks) {
        Roaring64NavigableMap m = new Roaring64NavigableMap();
        if (blocks > 0) m.addRange(0, blocks);
        return m;
    }

    /** Called by the resync when no dirty block is left: the legs are one generation again. */
    void resyncComplete() throws IOException {
        Leg s = secondary;
        long gen = primary.superblock().currentGen;
        s.updateSuperblock(sb -> sb.currentGen = gen);
        primary.updateSuperblock(sb -> {
            sb.bitmapGen = 0;
            sb.flags &= ~Superblock.FLAG_DEGRADED;
        });
    }

    public ResyncRunner resync() {
        return resync;
    }

    /** The resync window from now on: every resync pass that starts after this takes it (see also the two-argument form). */
    public void setResyncWindow(int window) {
        // checked here, before anything changes: the next pass's WindowControl would refuse it on its own thread
        org.ublkmirror.resync.WindowControl.checkMax(window);
        opts.resyncWindow = window;
    }

    /**
     * As above, and whether the window follows the copies' latency up to {@code window} or is
     * always {@code window}; a resync running now takes both for its next copies.
     */
    public void setResyncWindow(int window, boolean adaptive) {
        setResyncWindow(window);
        opts.resyncAdaptive = adaptive;
        ResyncRunner r = resync;
        org.ublkmirror.resync.WindowControl wc = r == null ? null : r.windowControl();
        if (wc != null && r.running()) wc.reconfigure(window, adaptive);
    }

    public int resyncWindow() {
        return opts.resyncWindow;
    }

    public boolean resyncAdaptive() {
        return opts.resyncAdaptive;
    }

    /** Blocks copied by every resync of this run (the sum over attaches). */
    public long resyncedBlocks() {
        return resyncedBlocks.get();
    }

    void addResynced(long n) {
        resyncedBlocks.addAndGet(n);
    }

    /** Blocks tracked for application writes while degraded (with repeats), this run. */
    public long trackedWriteBlocks() {
        return tracking.writeBlocks();
    }

    /**
     * Blocks marked dirty beyond the application's writes, this run (with repeats): the intent
     * record's unclean regions when the secondary failed, blocks a failed resync had copied since
     * its last checkpoint, crash repair. Every resync copies at most tracked + superset blocks.
     */
    public long supersetBlocks() {
        return tracking.supersetBlocks();
    }

    Tracking tracking() {
        return tracking;
    }

    public Leg primary() {
        return primary;
    }

    public Leg secondary() {
        return secondary;
    }

    public MirrorConfig config() {
        return config;
    }

    Options options() {
        return opts;
    }

    public RecoveryReport recovery() {
        return recovery;
    }

    public State state() {
        if (closed) return State.CLOSED;
        if (splitBrain) return State.SPLIT_BRAIN;
        ResyncRunner r = resync;
        if (r != null && r.running()) return State.RESYNCING;
        if (!forker.secondaryOnline()) return State.DEGRADED;
        return primary.superblock().bitmapGen != 0 ? State.RESYNCING : State.MIRRORED;
    }

    /** Shipping of the tracking log to a log receiver (--ship-to): shipped sequence, time, error. Empty without one. */
    public List<org.ublkmirror.track.AsyncLogStore.Status> logShipping() {
        return tracking.shipping();
    }

    /** The live tracking log (read it; the tracker owns it). */
    public org.ublkmirror.track.TrackingLog trackingLog() {
        return tracking.log();
    }

    public long dirtyBlocks() {
        return tracking.dirtyCount();
    }

    // ------------------------------------------------------------------ close

    /** Clean shutdown: everything flushed, both superblocks marked clean. */
    @Override
    public synchronized void close() throws IOException {
        if (closed) return;
        closed = true;
        IOException first = null;
        try {
            ResyncRunner r = resync;
            if (r != null) r.cancelAndWait();
            tracking.stopAutoPersist();
            forker.flush();
            forker.close();
            tracking.persist();
            long last = Tag.seq(forker.window().lastIssued());
            boolean sOnline = forker.secondaryOnline();
            primary.updateSuperblock(sb -> {
                sb.flags |= Superblock.FLAG_CLEAN;
                sb.lastTag = last;
            });
            if (sOnline && secondary != null) {
                secondary.updateSuperblock(sb -> {
                    sb.flags |= Superblock.FLAG_CLEAN;
                    sb.lastTag = last;
                });
            }
        } catch (IOException e) {
            first = e;
        } finally {
            closeQuietly(tracking);
            closeQuietly(primary);
            closeQuietly(secondary);
        }
        if (first != null) throw first;
    }

    /** For tests: drop everything without the clean-shutdown steps, as kill -9 would. */
    public void abandon() {
        closed = true;
        ResyncRunner r = resync;
        if (r != null) r.cancel();
        tracking.stopAutoPersist();
        tracking.abandonShipping();
        closeQuietly(forker::closeNow);
    }
}
