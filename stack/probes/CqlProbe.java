import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

/**
 * Readiness probe for the local Cassandra: speaks CQL native protocol v4 over a plain socket
 * (STARTUP, then QUERY "SELECT release_version FROM system.local") and prints the version.
 * Needs nothing but the JDK, so it does not depend on which driver cassandra-all happens to ship.
 *
 * Usage: CqlProbe HOST PORT TIMEOUT_SECONDS [PID]
 * Retries until the query succeeds or the timeout passes. Exit codes: 0 ready, 1 timed out,
 * 3 the process PID (the server being waited for) exited, 2 usage error.
 */
public final class CqlProbe {
    private static final int VERSION = 0x04;
    private static final int OP_ERROR = 0x00;
    private static final int OP_STARTUP = 0x01;
    private static final int OP_READY = 0x02;
    private static final int OP_AUTHENTICATE = 0x03;
    private static final int OP_QUERY = 0x07;
    private static final int OP_RESULT = 0x08;
    private static final int FLAG_TRACING = 0x02;
    private static final int FLAG_CUSTOM_PAYLOAD = 0x04;
    private static final int FLAG_WARNING = 0x08;

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 3) {
            System.err.println("usage: CqlProbe HOST PORT TIMEOUT_SECONDS [PID]");
            System.exit(2);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        long deadline = System.nanoTime() + (long) (Double.parseDouble(args[2]) * 1e9);
        long pid = args.length > 3 ? Long.parseLong(args[3]) : -1;
        String last = "no attempt made";
        while (true) {
            try {
                String version = releaseVersion(host, port);
                System.out.println("release_version " + version);
                System.exit(0);
            } catch (Exception e) {
                last = e.toString();
            }
            if (pid > 0 && !alive(pid)) {
                System.err.println("process " + pid + " exited; last CQL error: " + last);
                System.exit(3);
            }
            if (System.nanoTime() > deadline) {
                System.err.println("timed out; last CQL error: " + last);
                System.exit(1);
            }
            Thread.sleep(1000);
        }
    }

    static String releaseVersion(String host, int port) throws IOException {
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(host, port), 2000);
            socket.setSoTimeout(10_000);
            DataOutputStream out = new DataOutputStream(socket.getOutputStream());
            DataInputStream in = new DataInputStream(socket.getInputStream());

            ByteArrayOutputStream startup = new ByteArrayOutputStream();
            DataOutputStream s = new DataOutputStream(startup);
            s.writeShort(1); // [string map] with one entry
            writeString(s, "CQL_VERSION");
            writeString(s, "3.0.0");
            send(out, 1, OP_STARTUP, startup.toByteArray());
            Frame ready = receive(in, 1);
            if (ready.opcode() == OP_AUTHENTICATE) {
                throw new IOException("server requires authentication");
            }
            if (ready.opcode() != OP_READY) {
                throw new IOException("unexpected opcode " + ready.opcode() + " after STARTUP");
            }

            ByteArrayOutputStream query = new ByteArrayOutputStream();
            DataOutputStream q = new DataOutputStream(query);
            byte[] cql = "SELECT release_version FROM system.local".getBytes(StandardCharsets.UTF_8);
            q.writeInt(cql.length); // [long string]
            q.write(cql);
            q.writeShort(0x0001); // consistency ONE
            q.writeByte(0); // no query flags
            send(out, 2, OP_QUERY, query.toByteArray());
            Frame result = receive(in, 2);
            if (result.opcode() != OP_RESULT) {
                throw new IOException("unexpected opcode " + result.opcode() + " after QUERY");
            }
            return firstVarcharCell(result.body());
        }
    }

    private record Frame(int opcode, DataInputStream body) { }

    private static void send(DataOutputStream out, int stream, int opcode, byte[] body) throws IOException {
        out.writeByte(VERSION);
        out.writeByte(0); // flags
        out.writeShort(stream);
        out.writeByte(opcode);
        out.writeInt(body.length);
        out.write(body);
        out.flush();
    }

    private static Frame receive(DataInputStream in, int expectedStream) throws IOException {
        int version = in.readUnsignedByte();
        int flags = in.readUnsignedByte();
        int stream = in.readShort();
        int opcode = in.readUnsignedByte();
        int length = in.readInt();
        if ((version & 0x7f) != VERSION) {
            // The server answers with the highest version it supports when it refuses ours.
            in.skipNBytes(Math.max(0, length));
            throw new IOException("server answered with protocol version " + (version & 0x7f));
        }
        if (length < 0 || length > (16 << 20)) {
            throw new IOException("implausible frame length " + length);
        }
        byte[] bytes = new byte[length];
        in.readFully(bytes);
        if (stream != expectedStream) {
            throw new IOException("answer on stream " + stream + ", expected " + expectedStream);
        }
        DataInputStream body = new DataInputStream(new java.io.ByteArrayInputStream(bytes));
        if ((flags & FLAG_TRACING) != 0) {
            body.skipNBytes(16); // tracing session uuid
        }
        if ((flags & FLAG_WARNING) != 0) {
            int n = body.readUnsignedShort();
            for (int i = 0; i < n; i++) {
                readString(body);
            }
        }
        if ((flags & FLAG_CUSTOM_PAYLOAD) != 0) {
            int n = body.readUnsignedShort();
            for (int i = 0; i < n; i++) {
                readString(body);
                readBytes(body);
            }
        }
        if (opcode == OP_ERROR) {
            int code = body.readInt();
            String message = readString(body);
            throw new IOException(String.format("CQL error 0x%04x: %s", code, message));
        }
        return new Frame(opcode, body);
    }

    /** Parses a RESULT/Rows body and returns the first column of the first row as text. */
    private static String firstVarcharCell(DataInputStream body) throws IOException {
        int kind = body.readInt();
        if (kind != 0x0002) {
            throw new IOException("result kind " + kind + " is not Rows");
        }
        int flags = body.readInt();
        int columns = body.readInt();
        if ((flags & 0x0002) != 0) {
            readBytes(body); // paging state
        }
        if ((flags & 0x0004) == 0) { // metadata present
            boolean globalSpec = (flags & 0x0001) != 0;
            if (globalSpec) {
                readString(body);
                readString(body);
            }
            for (int i = 0; i < columns; i++) {
                if (!globalSpec) {
                    readString(body);
                    readString(body);
                }
                readString(body); // column name
                skipType(body);
            }
        }
        int rows = body.readInt();
        if (rows < 1 || columns < 1) {
            throw new IOException("system.local returned no row");
        }
        byte[] cell = readBytes(body);
        if (cell == null) {
            throw new IOException("release_version is null");
        }
        return new String(cell, StandardCharsets.UTF_8);
    }

    private static void skipType(DataInputStream body) throws IOException {
        int id = body.readUnsignedShort();
        switch (id) {
            case 0x0000 -> readString(body); // custom
            case 0x0020, 0x0022 -> skipType(body); // list, set
            case 0x0021 -> { // map
                skipType(body);
                skipType(body);
            }
            case 0x0030 -> { // udt
                readString(body);
                readString(body);
                int n = body.readUnsignedShort();
                for (int i = 0; i < n; i++) {
                    readString(body);
                    skipType(body);
                }
            }
            case 0x0031 -> { // tuple
                int n = body.readUnsignedShort();
                for (int i = 0; i < n; i++) {
                    skipType(body);
                }
            }
            default -> { } // simple type: nothing follows the id
        }
    }

    private static void writeString(DataOutputStream out, String s) throws IOException {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.writeShort(b.length);
        out.write(b);
    }

    private static String readString(DataInputStream in) throws IOException {
        int n = in.readUnsignedShort();
        byte[] b = new byte[n];
        in.readFully(b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private static byte[] readBytes(DataInputStream in) throws IOException {
        int n = in.readInt();
        if (n < 0) {
            return null;
        }
        byte[] b = new byte[n];
        in.readFully(b);
        return b;
    }

    /** True while the process exists and is not a zombie (a dead daemon nobody has reaped). */
    static boolean alive(long pid) {
        if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
            return false;
        }
        try {
            String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/" + pid + "/stat"));
            return stat.charAt(stat.lastIndexOf(')') + 2) != 'Z';
        } catch (java.io.IOException | RuntimeException e) {
            return true; // no procfs: trust ProcessHandle
        }
    }
}
