package org.ublkmirror.logship;

import org.ublkmirror.track.LogStore;

import java.io.Closeable;
import java.io.IOException;

/**
 * A {@link LogStore} on a log receiver: {@link #write} sends the record (PUT) and returns once the
 * receiver has it durably (it fsyncs before it answers); {@link #readLatest} fetches it back by
 * the mirror's name. Synchronous and blocking, with the client's timeouts: the mirror wraps it in
 * a {@link org.ublkmirror.track.AsyncLogStore} so a slow or absent receiver never holds up a
 * write or a FLUSH.
 */
public final class RemoteLogStore implements LogStore, Closeable {
    private final ReceiverClient client;
    private final String name;

    public RemoteLogStore(ReceiverClient client, String name) {
        this.client = client;
        this.name = name;
    }

    @Override
    public synchronized void write(byte[] record) throws IOException {
        client.put(name, record);
    }

    @Override
    public synchronized byte[] readLatest() throws IOException {
        ReceiverClient.Fetched f = client.getByName(name);
        return f == null ? null : f.record();
    }

    @Override
    public String describe() {
        return "log receiver " + client.address() + " (mirror " + name + ")";
    }

    @Override
    public synchronized void close() {
        client.close();
    }

    @Override
    public String toString() {
        return "RemoteLogStore[" + describe() + "]";
    }
}
