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
    private final ShipTarget target;
    private final ReceiverClient.Options options;
    private final String name;
    private ReceiverClient client;

    public RemoteLogStore(ReceiverClient client, String name) {
        this.target = null;
        this.options = null;
        this.client = client;
        this.name = name;
    }

    /**
     * A store on {@code target}, set up at first use: a TLS key store that cannot be read then
     * fails that write (reported by the shipper's status), not the mirror's start.
     */
    public RemoteLogStore(ShipTarget target, ReceiverClient.Options options, String name) {
        this.target = target;
        this.options = options;
        this.name = name;
    }

    private ReceiverClient client() throws IOException {
        if (client == null) client = target.client(options);
        return client;
    }

    @Override
    public synchronized void write(byte[] record) throws IOException {
        client().put(name, record);
    }

    @Override
    public synchronized byte[] readLatest() throws IOException {
        ReceiverClient.Fetched f = client().getByName(name);
        return f == null ? null : f.record();
    }

    @Override
    public String describe() {
        return "log receiver " + (target != null ? target.address() : client.address()) + " (mirror " + name + ")";
    }

    @Override
    public synchronized void close() {
        if (client != null) client.close();
    }

    @Override
    public String toString() {
        return "RemoteLogStore[" + describe() + "]";
    }
}
