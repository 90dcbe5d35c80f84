package org.ublkmirror.track;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/**
 * A record kept as one file {@code dir/name}, replaced atomically: the new record goes to
 * {@code dir/name.tmp}, which is fsynced, renamed over {@code name}, and then the directory is
 * fsynced so the rename itself is durable. A crash leaves either the old or the new file; a
 * leftover temp file is ignored by {@link #readLatest()} and overwritten by the next write.
 *
 * <p>This is the log-shipping target ("second location": a directory on a network file system
 * for now) and also usable as a local copy.
 */
public final class DirectoryLogStore implements LogStore {
    private final Path dir;
    private final String name;

    public DirectoryLogStore(Path dir, String name) {
        if (name.isEmpty() || name.contains("/") || name.endsWith(".tmp")) {
            throw new IllegalArgumentException("tracking log file name must be a plain name not ending in .tmp: '" + name + "'");
        }
        this.dir = dir;
        this.name = name;
    }

    public Path file() {
        return dir.resolve(name);
    }

    public Path tempFile() {
        return dir.resolve(name + ".tmp");
    }

    @Override
    public synchronized void write(byte[] record) throws IOException {
        Files.createDirectories(dir);
        Path tmp = tempFile();
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer b = ByteBuffer.wrap(record);
            while (b.hasRemaining()) {
                ch.write(b);
            }
            ch.force(true);
        }
        try {
            Files.move(tmp, file(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            throw new IOException(dir + " does not support atomic rename; the tracking log cannot be kept there safely", e);
        }
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true); // makes the rename durable
        }
    }

    @Override
    public byte[] readLatest() throws IOException {
        try {
            return Files.readAllBytes(file());
        } catch (NoSuchFileException e) {
            return null;
        }
    }

    @Override
    public String describe() {
        return file().toString();
    }

    @Override
    public String toString() {
        return "DirectoryLogStore[" + describe() + "]";
    }
}
