// HikariCP checkout cycle with a stub connection, the same operation as the Rust
// `conn/w2s10t{tasks}` bench: getConnection() + close() on a pool of 10 whose connections do
// nothing (no checkout test: HikariCP skips its aliveness check for a connection used within
// the last 500 ms, as poolguard skips validation within `validation_bypass`).
//
// Usage: java -cp HikariCP.jar:slf4j-api.jar:slf4j-nop.jar:. HikariLoop THREADS...
// For each thread count: a warm-up, then a timed run; prints "hikari <threads> <ns/op>",
// where ns/op is wall time over all threads' cycles divided by their count.

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;

import java.io.PrintWriter;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.Proxy;
import java.sql.Connection;
import java.sql.SQLFeatureNotSupportedException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.LongAdder;
import java.util.logging.Logger;
import javax.sql.DataSource;

public final class HikariLoop {
    /** A connection that does nothing: every method answers its type's default (isValid: true). */
    static Connection stubConnection() {
        InvocationHandler h = (proxy, m, args) -> {
            Class<?> r = m.getReturnType();
            if (m.getName().equals("isValid")) return true;
            if (m.getName().equals("isClosed")) return false;
            if (m.getName().equals("getAutoCommit")) return true;
            if (m.getName().equals("getTransactionIsolation")) return Connection.TRANSACTION_READ_COMMITTED;
            if (m.getName().equals("hashCode")) return System.identityHashCode(proxy);
            if (m.getName().equals("equals")) return proxy == args[0];
            if (m.getName().equals("toString")) return "stub";
            if (r == boolean.class) return false;
            if (r == int.class) return 0;
            if (r == long.class) return 0L;
            return null;
        };
        return (Connection) Proxy.newProxyInstance(
                HikariLoop.class.getClassLoader(), new Class<?>[] {Connection.class}, h);
    }

    /** A DataSource whose connections are stubs. */
    static final class StubDataSource implements DataSource {
        public Connection getConnection() { return stubConnection(); }
        public Connection getConnection(String u, String p) { return stubConnection(); }
        public PrintWriter getLogWriter() { return null; }
        public void setLogWriter(PrintWriter out) {}
        public void setLoginTimeout(int seconds) {}
        public int getLoginTimeout() { return 0; }
        public Logger getParentLogger() throws SQLFeatureNotSupportedException {
            throw new SQLFeatureNotSupportedException();
        }
        public <T> T unwrap(Class<T> iface) { return null; }
        public boolean isWrapperFor(Class<?> iface) { return false; }
    }

    /**
     * Every thread loops getConnection() + close() until `stop`; returns the cycles done and
     * the wall time from the start signal to the last thread's end, in ns.
     */
    static long[] run(HikariDataSource ds, int threads, long millis) throws Exception {
        AtomicBoolean stop = new AtomicBoolean();
        LongAdder done = new LongAdder();
        CountDownLatch ready = new CountDownLatch(threads);
        CountDownLatch go = new CountDownLatch(1);
        Thread[] ts = new Thread[threads];
        for (int i = 0; i < threads; i++) {
            ts[i] = new Thread(() -> {
                long n = 0;
                ready.countDown();
                try {
                    go.await();
                    while (!stop.get()) {
                        Connection c = ds.getConnection();
                        c.close();
                        n++;
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
                done.add(n);
            });
            ts[i].start();
        }
        ready.await();
        long t0 = System.nanoTime();
        go.countDown();
        Thread.sleep(millis);
        stop.set(true);
        for (Thread t : ts) t.join();
        return new long[] {done.sum(), System.nanoTime() - t0};
    }

    public static void main(String[] args) throws Exception {
        long warmMs = Long.getLong("warmup.ms", 2000);
        long timedMs = Long.getLong("timed.ms", 2000);
        HikariConfig cfg = new HikariConfig();
        cfg.setDataSource(new StubDataSource());
        cfg.setMaximumPoolSize(10);
        cfg.setMinimumIdle(10);
        cfg.setConnectionTimeout(30_000);
        cfg.setPoolName("stub");
        try (HikariDataSource ds = new HikariDataSource(cfg)) {
            for (String a : args) {
                int threads = Integer.parseInt(a);
                run(ds, threads, warmMs);
                long[] r = run(ds, threads, timedMs);
                long ops = r[0];
                long ns = r[1];
                if (ops == 0) throw new IllegalStateException("no cycle completed at " + threads + " threads");
                System.out.printf("hikari %d %.1f%n", threads, (double) ns / ops);
            }
        }
    }
}
