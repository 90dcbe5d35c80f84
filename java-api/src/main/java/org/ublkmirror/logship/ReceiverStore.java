package org.ublkmirror.logship;

import org.ublkmirror.track.CorruptLogException;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.track.TrackingLogFormat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What a log receiver keeps on disk: one directory per mirror, {@code DIR/NAME@VOLUME-UUID/},
 * holding two slot files {@code a.trackinglog} and {@code b.trackinglog} (like a leg's two
 * tracking-log slots). A new record replaces the slot that does not hold the newest one, by
 * temp file, fsync, rename, fsync of the directory; so the previous version stays readable, and
 * a slot damaged on disk (or a crash at any point) leaves the other. On start every directory is
 * read back and each slot decoded; the newest valid record wins.
 *
 * <p>Rules for a new record: it must decode (TrackingLogFormat: magic, version, CRC, epochs);
 * a name already held for another volume, or a volume held under another name, is refused
 * ({@link Refused} with {@link ShipProtocol#E_FOREIGN}); a lower sequence than the one held is
 * refused ({@link ShipProtocol#E_STALE}), the same sequence is accepted only as the very same
 * record (a retry), then nothing is written.
 *
 * <p>Thread safety: all methods are synchronized (a receiver serves a few mirrors).
 */
public final class ReceiverStore {
    public static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_.-]{0,62}");
    private static final Pattern DIR_NAME = Pattern.compile("(" + NAME.pattern() + ")@([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})");
    static final String[] SLOTS = {"a.trackinglog", "b.trackinglog"};

    /** What the receiver holds for one mirror. */
    public record Entry(String name, UUID volume, long sequence, long receivedMillis, long dirtyBlocks, int recordLength) {
    }

    /** A record the receiver will not keep; {@code code} is the protocol's ERROR code. */
    public static final class Refused extends IOException {
        public final int code;

        public Refused(int code, String message) {
            super(message);
            this.code = code;
        }
    }

    private final Path dir;
    private final Map<String, Held> byName = new LinkedHashMap<>();
    private final List<String> loadProblems = new ArrayList<>();

    private static final class Held {
        final String name;
        final UUID volume;
        final Path dir;
        long seq = -1;
        int newestSlot = -1;
        long received;
        long dirty;
        int length;

        Held(String name, UUID volume, Path dir) {
            this.name = name;
            this.volume = volume;
            this.dir = dir;
        }

        Entry entry() {
            return new Entry(name, volume, seq, received, dirty, length);
        }
    }

    private ReceiverStore(Path dir) {
        this.dir = dir;
    }

    /** Opens (creating it if needed) the receiver directory and reads back what it holds. */
    public static ReceiverStore open(Path dir) throws IOException {
        Files.createDirectories(dir);
        if (!Files.isDirectory(dir)) throw new NoSuchFileException(dir.toString(), null, "not a directory");
        ReceiverStore s = new ReceiverStore(dir);
        s.scan();
        return s;
    }

    private void scan() throws IOException {
        List<Path> subdirs = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) subdirs.add(p);
        }
        subdirs.sort(Comparator.naturalOrder());
        for (Path p : subdirs) {
            Matcher m = DIR_NAME.matcher(p.getFileName().toString());
            if (!Files.isDirectory(p) || !m.matches()) continue;
            Held h = new Held(m.group(1), UUID.fromString(m.group(2)), p);
            for (int i = 0; i < SLOTS.length; i++) {
                byte[] rec = readSlot(h, i);
                if (rec == null) continue;
                try {
                    TrackingLog log = TrackingLogFormat.decode(rec);
                    if (!h.volume.equals(log.volumeUuid())) throw new CorruptLogException("record of volume " + log.volumeUuid());
                    if (log.sequence() > h.seq) take(h, i, log, rec.length, Files.getLastModifiedTime(p.resolve(SLOTS[i])).toMillis());
                } catch (CorruptLogException e) {
                    loadProblems.add(p.resolve(SLOTS[i]) + ": " + e.getMessage() + " (ignored; the other slot is used)");
                }
            }
            Held other = byName.get(h.name);
            if (other != null) {
                loadProblems.add(p + ": a second volume under the name '" + h.name + "' (" + other.dir + " is used)");
                continue;
            }
            byName.put(h.name, h);
        }
    }

    private static void take(Held h, int slot, TrackingLog log, int length, long received) {
        h.seq = log.sequence();
        h.newestSlot = slot;
        h.dirty = log.dirtyCount();
        h.length = length;
        h.received = received;
    }

    private static byte[] readSlot(Held h, int slot) throws IOException {
        try {
            return Files.readAllBytes(h.dir.resolve(SLOTS[slot]));
        } catch (NoSuchFileException e) {
            return null;
        }
    }

    /** Problems found reading the directory at open (damaged slots, duplicate names); empty if none. */
    public synchronized List<String> loadProblems() {
        return List.copyOf(loadProblems);
    }

    public Path dir() {
        return dir;
    }

    /**
     * Keeps {@code record} as mirror {@code name}'s tracking log, durably when this returns.
     *
     * @return whether it was written (false: this very record was held already) and the sequence held now
     * @throws Refused if the name is invalid, the record corrupt, foreign or older
     */
    public synchronized Stored put(String name, byte[] record) throws IOException {
        if (name == null || !NAME.matcher(name).matches()) {
            throw new Refused(ShipProtocol.E_BAD_REQUEST, "mirror name '" + name + "' is invalid: use letters, digits, '.', '_', '-' (at most 63)");
        }
        TrackingLog log;
        try {
            log = TrackingLogFormat.decode(record);
        } catch (CorruptLogException e) {
            throw new Refused(ShipProtocol.E_CORRUPT_RECORD, "tracking log of '" + name + "' refused: " + e.getMessage());
        }
        UUID vol = log.volumeUuid();
        Held h = byName.get(name);
        if (h != null && !h.volume.equals(vol)) {
            throw new Refused(ShipProtocol.E_FOREIGN, "this receiver holds mirror '" + name + "' of volume " + h.volume
                    + ", not " + vol + ": another mirror with the same name; remove " + h.dir
                    + " on the receiver if the old mirror is gone, or rename the mirror");
        }
        if (h == null) {
            for (Held o : byName.values()) {
                if (o.volume.equals(vol)) {
                    throw new Refused(ShipProtocol.E_FOREIGN, "this receiver holds volume " + vol + " as mirror '" + o.name
                            + "', not '" + name + "'; remove " + o.dir + " on the receiver to ship it under a new name");
                }
            }
        }
        if (h != null && log.sequence() <= h.seq) {
            if (log.sequence() == h.seq && Arrays.equals(readSlot(h, h.newestSlot), record)) return new Stored(false, h.seq);
            throw new Refused(ShipProtocol.E_STALE, "tracking log of '" + name + "' seq " + log.sequence()
                    + " refused: the receiver holds seq " + h.seq + " (an older log never replaces a newer one)");
        }
        if (h == null) {
            Path d = dir.resolve(name + "@" + vol);
            Files.createDirectories(d);
            fsyncDir(dir); // the new directory entry is durable
            h = new Held(name, vol, d);
            byName.put(name, h);
        }
        int slot = h.newestSlot < 0 ? 0 : 1 - h.newestSlot;
        writeAtomically(h.dir, SLOTS[slot], record);
        take(h, slot, log, record.length, System.currentTimeMillis());
        return new Stored(true, h.seq);
    }

    /** The outcome of a {@link #put}. */
    public record Stored(boolean written, long sequence) {
    }

    static void writeAtomically(Path d, String file, byte[] data) throws IOException {
        Path tmp = d.resolve(file + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer b = ByteBuffer.wrap(data);
            while (b.hasRemaining()) ch.write(b);
            ch.force(true);
        }
        try {
            Files.move(tmp, d.resolve(file), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            throw new IOException(d + " does not support atomic rename; tracking logs cannot be kept there safely", e);
        }
        fsyncDir(d);
    }

    private static void fsyncDir(Path d) throws IOException {
        try (FileChannel c = FileChannel.open(d, StandardOpenOption.READ)) {
            c.force(true);
        }
    }

    /** The newest record of mirror {@code name}, with its entry; null if none is held. */
    public synchronized Copy getByName(String name) throws IOException {
        Held h = byName.get(name);
        return h == null ? null : read(h);
    }

    /** The newest record of volume {@code volume}; null if none is held. */
    public synchronized Copy getByVolume(UUID volume) throws IOException {
        for (Held h : byName.values()) {
            if (h.volume.equals(volume)) return read(h);
        }
        return null;
    }

    /** A record as held, with what the receiver knows about it. */
    public record Copy(Entry entry, byte[] record) {
    }

    private Copy read(Held h) throws IOException {
        if (h.seq < 0) return null;
        byte[] rec = readSlot(h, h.newestSlot);
        try {
            if (rec == null) throw new CorruptLogException("slot file missing");
            TrackingLogFormat.decode(rec);
        } catch (CorruptLogException e) {
            // damaged on disk since it was written: fall back to the other slot
            byte[] other = readSlot(h, 1 - h.newestSlot);
            try {
                TrackingLog log = TrackingLogFormat.decode(other);
                take(h, 1 - h.newestSlot, log, other.length, Files.getLastModifiedTime(h.dir.resolve(SLOTS[1 - h.newestSlot])).toMillis());
                return new Copy(h.entry(), other);
            } catch (CorruptLogException e2) {
                throw new IOException("both copies of the tracking log of '" + h.name + "' in " + h.dir + " are damaged: " + e.getMessage(), e);
            }
        }
        return new Copy(h.entry(), rec);
    }

    /** Every mirror held, by name. */
    public synchronized List<Entry> list() {
        List<Entry> out = new ArrayList<>();
        for (Held h : byName.values()) {
            if (h.seq >= 0) out.add(h.entry());
        }
        out.sort(Comparator.comparing(Entry::name));
        return out;
    }
}
