package org.ublkmirror.track;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DirectoryLogStoreTest {
    @TempDir
    Path dir;

    @Test
    void writeReplacesAtomicallyAndLeftoverTempIsIgnored() throws IOException {
        DirectoryLogStore s = new DirectoryLogStore(dir.resolve("ship"), "vol.trk");
        assertNull(s.readLatest(), "missing directory reads as no record");
        s.write(new byte[] {1, 2, 3});
        assertArrayEquals(new byte[] {1, 2, 3}, s.readLatest());
        // a crash between writing the temp file and the rename leaves a partial temp file
        Files.write(s.tempFile(), new byte[] {9, 9});
        assertArrayEquals(new byte[] {1, 2, 3}, s.readLatest());
        assertArrayEquals(new byte[] {1, 2, 3}, new DirectoryLogStore(dir.resolve("ship"), "vol.trk").readLatest());
        s.write(new byte[] {4, 5});           // the next write overwrites the leftover
        assertArrayEquals(new byte[] {4, 5}, s.readLatest());
        assertFalse(Files.exists(s.tempFile()));
        try (var l = Files.list(dir.resolve("ship"))) {
            assertEquals(1, l.count());
        }
    }

    @Test
    void unwritableTargetFailsWithIOException() throws IOException {
        Path f = dir.resolve("afile");
        Files.write(f, new byte[] {0});
        DirectoryLogStore s = new DirectoryLogStore(f, "vol.trk"); // "directory" is a file
        assertThrows(IOException.class, () -> s.write(new byte[] {1}));
        assertThrows(IllegalArgumentException.class, () -> new DirectoryLogStore(dir, "a/b"));
    }
}
