package org.ublkmirror.mirror;

import org.ublkmirror.fork.IntentRecord;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.MetadataException;
import org.ublkmirror.leg.Store;
import org.ublkmirror.leg.Superblock;
import org.ublkmirror.tags.TagJournal;
import org.ublkmirror.tags.TagTable;
import org.ublkmirror.track.Tracker;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.verify.VerifyReport;
import org.ublkmirror.verify.Verifier;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Path;
import java.util.function.Function;

/**
 * Read-only views of a mirror that is not running: what `mirrorctl status`, `tags`, `log` and
 * `verify` show offline. Stores are opened read-only: these commands cannot change a byte.
 */
public final class Inspect implements Closeable {
    public final MirrorConfig config;
    public final Leg primary;
    public final Leg secondary; // null when it cannot be opened
    public final String secondaryProblem;

    private Inspect(MirrorConfig config, Leg primary, Leg secondary, String secondaryProblem) {
        this.config = config;
        this.primary = primary;
        this.secondary = secondary;
        this.secondaryProblem = secondaryProblem;
    }

    public static Inspect open(MirrorConfig cfg) throws IOException {
        return open(cfg, null);
    }

    public static Inspect open(MirrorConfig cfg, Function<String, Store> opener) throws IOException {
        Store ps = opener != null ? opener.apply(cfg.primary()) : openReadOnly(cfg, cfg.primary());
        Leg p;
        try {
            p = Leg.open(ps);
        } catch (IOException e) {
            Mirror.closeQuietly(ps);
            throw e;
        }
        Leg s = null;
        String problem = null;
        Store ss = null;
        try {
            ss = opener != null ? opener.apply(cfg.secondary()) : openReadOnly(cfg, cfg.secondary());
            s = Leg.open(ss);
            Mirror.checkPair(p, s, cfg);
        } catch (MetadataException e) {
            Mirror.closeQuietly(p);
            Mirror.closeQuietly(ss);
            throw e;
        } catch (IOException e) {
            Mirror.closeQuietly(ss);
            problem = e.getMessage();
            s = null;
        }
        return new Inspect(cfg, p, s, problem);
    }

    /** Local legs read-only (these views change no byte); a remote leg through its gateway. */
    static Store openReadOnly(MirrorConfig cfg, String spec) throws IOException {
        return org.ublkmirror.leg.Stores.isRemote(spec)
                ? org.ublkmirror.leg.Stores.open(spec, Mirror.remoteOptions(cfg, null, spec))
                : FileStore.openReadOnly(Path.of(spec));
    }

    public TagTable primaryTags() throws IOException {
        return TagJournal.scan(primary);
    }

    public TagTable secondaryTags() throws IOException {
        return secondary == null ? null : TagJournal.scan(secondary);
    }

    public IntentRecord intent(Leg leg) throws IOException {
        return leg == null ? null : IntentRecord.read(leg);
    }

    /** The tracking log, from the primary leg or, failing that, the shipped copy. */
    public TrackingLog trackingLog() throws IOException {
        return Tracking.load(config, primary).log();
    }

    /** The tracking log as the second location holds it (log shipping): readable without the primary. */
    public static TrackingLog shippedLog(MirrorConfig cfg) throws IOException {
        if (cfg.shipDir() == null && cfg.shipTo() != null) {
            try (org.ublkmirror.logship.ReceiverClient c = cfg.shipTo().client(org.ublkmirror.logship.ReceiverClient.Options.defaults())) {
                org.ublkmirror.logship.ReceiverClient.Fetched f = c.getByName(cfg.name());
                if (f == null) {
                    throw new java.nio.file.NoSuchFileException("log receiver " + c.address(), null,
                            "holds no tracking log of mirror '" + cfg.name() + "' yet");
                }
                return org.ublkmirror.track.TrackingLogFormat.decode(f.record());
            }
        }
        if (cfg.shipDir() == null) {
            throw new IllegalArgumentException("mirror '" + cfg.name() + "' has no --ship-dir or --ship-to: its tracking log is not shipped");
        }
        byte[] rec = new org.ublkmirror.track.DirectoryLogStore(cfg.shipDir(), Tracking.shippedName(cfg.name())).readLatest();
        if (rec == null) {
            throw new java.nio.file.NoSuchFileException(cfg.shipDir().resolve(Tracking.shippedName(cfg.name())).toString(),
                    null, "no shipped tracking log yet");
        }
        return org.ublkmirror.track.TrackingLogFormat.decode(rec);
    }

    /** What state the legs say the mirror is in. */
    public String state() {
        Superblock p = primary.superblock();
        if (secondary == null) return "degraded";
        Superblock s = secondary.superblock();
        if (s.currentGen == p.currentGen && p.bitmapGen == 0) return p.clean() && s.clean() ? "clean" : "active";
        if (s.currentGen == p.bitmapGen || s.currentGen == p.currentGen) return "degraded";
        return "split-brain";
    }

    public VerifyReport verify(long regionBytes) throws IOException {
        if (secondary == null) {
            throw new IOException("secondary " + config.secondary() + " cannot be read: " + secondaryProblem);
        }
        try {
            return Verifier.verify(primary.data(), secondary.data(), Verifier.Options.DEFAULT.withRegionBytes(regionBytes));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("verify interrupted");
        }
    }

    @Override
    public void close() {
        Mirror.closeQuietly(primary);
        Mirror.closeQuietly(secondary);
    }
}
