package org.ublkmirror.track;

import java.io.IOException;

/**
 * Where encoded tracking-log records are kept: a leg's metadata area ({@link SlotLogStore}) or a
 * directory ({@link DirectoryLogStore}, also the log-shipping target). A store keeps the newest
 * record and replaces it atomically: after a crash at any point, {@link #readLatest()} returns
 * either the previous record or the new one, never a mix.
 */
public interface LogStore {

    /** Replaces the stored record with {@code record}, durably (it survives power loss) when this returns. */
    void write(byte[] record) throws IOException;

    /** The newest complete record, or {@code null} if the store has never been written. */
    byte[] readLatest() throws IOException;

    /** A short description for messages: a path, a store and offset. */
    String describe();
}
