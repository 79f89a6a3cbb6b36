// hls::stream for vecq_hw's dataflow check (issue 28; vecq_hw/hls/dataflow_check.py), NOT for csim or
// synthesis: every FIFO has the depth of its STREAM pragma and blocks its writer when full, as the
// hardware FIFO does, and every dataflow process of the top function runs in its own thread. When all
// running processes wait on a FIFO (to read an empty one or write a full one), no process can ever
// continue: the design deadlocks with these depths, which is reported (the processes and the FIFOs
// they wait on) and ends the program with exit status 4. Whether a network of blocking FIFOs of
// given depths deadlocks does not depend on the threads' timing (the processes read and write in a
// fixed order: a Kahn process network), so one run decides it.
// Same include guard as the ap_types copy: this one is found first on the include path.
#ifndef X_HLS_STREAM_SIM_H
#define X_HLS_STREAM_SIM_H

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vecq_df {

struct waiter {
    std::string process, what;
};

// one lock and one condition for every FIFO: simple, and enough for a check
struct state {
    std::mutex m;
    std::condition_variable cv;
    int running = 0;           // processes started and not finished
    int blocked = 0;           // of them, waiting since the last change of any FIFO
    unsigned long generation = 0; // bumped by every change: a waiter counted before it re-counts itself
    std::vector<std::thread> threads;
    std::vector<waiter> waits;
};
inline state &g() {
    static state s;
    return s;
}
inline std::string &current() {
    static thread_local std::string name = "testbench";
    return name;
}

// every running process waits and none can change a FIFO: report and stop
inline void check_locked() {
    state &s = g();
    if (s.running > 0 && s.blocked == s.running) {
        std::cout << "DEADLOCK: all " << s.running << " running dataflow processes wait on a FIFO:" << std::endl;
        for (size_t i = 0; i < s.waits.size(); i++)
            std::cout << "  " << s.waits[i].process << " " << s.waits[i].what << std::endl;
        std::cout.flush();
        std::_Exit(4);
    }
}

// wait (the lock held) until ready(); counts the caller as blocked meanwhile
template <class F> void wait_until(std::unique_lock<std::mutex> &lk, F ready, const std::string &what) {
    state &s = g();
    while (!ready()) {
        if (current() == "testbench") { // not a dataflow process: the testbench reads what the design wrote
            std::cout << "ERROR: the testbench " << what << std::endl;
            std::_Exit(5);
        }
        s.blocked++;
        s.waits.push_back(waiter{current(), what});
        const unsigned long gen = s.generation;
        check_locked();
        s.cv.wait(lk);
        if (s.generation == gen) { // woken without a change: still counted, uncount
            s.blocked--;
        }
        for (size_t i = 0; i < s.waits.size(); i++)
            if (s.waits[i].process == current()) {
                s.waits.erase(s.waits.begin() + i);
                break;
            }
    }
}

inline void changed_locked() {
    state &s = g();
    s.generation++;
    s.blocked = 0; // every waiter re-counts itself when it finds it must wait again
    s.cv.notify_all();
}

// the depth of FIFO ``name``: its pragma depth, or the one VECQ_DF_DEPTHS="name=depth,..." gives
// (so that one build checks several depths)
inline size_t depth(const char *name, size_t pragma_depth) {
    const char *env = std::getenv("VECQ_DF_DEPTHS");
    if (env == 0)
        return pragma_depth;
    const std::string all(env), key = std::string(name) + "=";
    for (size_t pos = 0; pos < all.size();) {
        size_t end = all.find(',', pos);
        if (end == std::string::npos)
            end = all.size();
        const std::string item = all.substr(pos, end - pos);
        if (item.compare(0, key.size(), key) == 0)
            return std::strtoul(item.c_str() + key.size(), 0, 10);
        pos = end + 1;
    }
    return pragma_depth;
}

inline void spawn(const char *name, std::function<void()> body) {
    state &s = g();
    std::lock_guard<std::mutex> lk(s.m);
    s.running++;
    std::string n(name);
    s.threads.push_back(std::thread([n, body]() {
        current() = n;
        body();
        std::lock_guard<std::mutex> lk2(g().m);
        g().running--;
        changed_locked();
        check_locked();
    }));
}

inline void join_all() {
    std::vector<std::thread> threads;
    {
        std::lock_guard<std::mutex> lk(g().m);
        threads.swap(g().threads);
    }
    for (size_t i = 0; i < threads.size(); i++)
        threads[i].join();
}

} // namespace vecq_df

namespace hls {

template <typename T> class stream {
    std::string _name;
    std::deque<T> _data;
    size_t _depth; // 0: unbounded (the testbench's own streams, the top function's ports)

    stream(const stream &);
    stream &operator=(const stream &);

  public:
    stream() : _name("hls_stream"), _depth(0) {}
    stream(const std::string name) : _name(name), _depth(0) {}
    void vecq_set_depth(size_t depth) { _depth = depth; }

    T read() {
        std::unique_lock<std::mutex> lk(vecq_df::g().m);
        vecq_df::wait_until(lk, [this]() { return !_data.empty(); }, "reads the empty FIFO '" + _name + "'");
        T head = _data.front();
        _data.pop_front();
        vecq_df::changed_locked();
        return head;
    }
    void read(T &head) { head = read(); }
    void write(const T &tail) {
        std::unique_lock<std::mutex> lk(vecq_df::g().m);
        vecq_df::wait_until(lk, [this]() { return _depth == 0 || _data.size() < _depth; },
                            "writes the full FIFO '" + _name + "' (depth " + std::to_string(_depth) + ")");
        _data.push_back(tail);
        vecq_df::changed_locked();
    }
    void operator>>(T &head) { read(head); }
    void operator<<(const T &tail) { write(tail); }
    bool empty() {
        std::lock_guard<std::mutex> lk(vecq_df::g().m);
        return _data.empty();
    }
    bool full() {
        std::lock_guard<std::mutex> lk(vecq_df::g().m);
        return _depth != 0 && _data.size() >= _depth;
    }
    size_t size() {
        std::lock_guard<std::mutex> lk(vecq_df::g().m);
        return _data.size();
    }
    bool read_nb(T &head) {
        std::lock_guard<std::mutex> lk(vecq_df::g().m);
        if (_data.empty())
            return false;
        head = _data.front();
        _data.pop_front();
        vecq_df::changed_locked();
        return true;
    }
    bool write_nb(const T &tail) {
        std::lock_guard<std::mutex> lk(vecq_df::g().m);
        if (_depth != 0 && _data.size() >= _depth)
            return false;
        _data.push_back(tail);
        vecq_df::changed_locked();
        return true;
    }
};

} // namespace hls

#endif
