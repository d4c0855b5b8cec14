//! A small fixed pool of compression threads, shared by every layer of a load.
//!
//! Besides running jobs, the pool hands out *permits*: one per compression block in flight
//! (queued, running, or finished but not yet written out). Their number is fixed, so memory
//! stays bounded however many layers and images compress at the same time.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads plus the permits that bound the blocks in flight.
pub(crate) struct Pool {
    sender: mpsc::Sender<Job>,
    permits: Mutex<usize>,
    freed: Condvar,
}

impl Pool {
    /// Starts `threads` workers (at least one) and `2 × threads` permits: enough to keep every
    /// worker busy while the writer of a layer waits for the oldest block.
    pub(crate) fn new(threads: usize) -> std::io::Result<Pool> {
        let threads = threads.max(1);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads {
            let receiver = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("alba-compress-{n}"))
                .spawn(move || work(&receiver))?;
        }
        Ok(Pool {
            sender,
            permits: Mutex::new(2 * threads),
            freed: Condvar::new(),
        })
    }

    /// Queues a job; it runs on some worker.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        // Workers only stop once the pool (and its sender) is dropped, so sending cannot fail
        // while `self` lives; a job lost anyway shows up as a closed result channel.
        let _ = self.sender.send(Box::new(job));
    }

    /// Takes a permit if one is free.
    pub(crate) fn try_acquire(&self) -> bool {
        let mut free = lock(&self.permits);
        if *free == 0 {
            return false;
        }
        *free -= 1;
        true
    }

    /// Waits for a permit. Only call this while holding no permit yourself, or two writers
    /// could wait for each other.
    pub(crate) fn acquire(&self) {
        let mut free = lock(&self.permits);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
    }

    /// Gives a permit back.
    pub(crate) fn release(&self) {
        *lock(&self.permits) += 1;
        self.freed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave a counter half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn work(receiver: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match lock(receiver).recv() {
            Ok(job) => job,
            Err(_) => return, // pool dropped
        };
        // A panicking job drops its result sender, which its writer reports as an error;
        // the worker itself stays alive for the other layers.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}
