//! The in-memory [`TaskQueue`] as a [`Backend`]: each method calls the
//! queue's own, so the trait costs nothing on its hot path.

use std::future::Future;

use super::Backend;
use crate::queue::{Shutdown, ShutdownSummary, TaskError, TaskId, TaskQueue, TaskStatus};
use crate::BoxError;

impl<Req, Res, E> Backend<Req> for TaskQueue<Req, Res, E>
where
    Req: Send + 'static,
    Res: Send + 'static,
    E: Send + 'static,
{
    type Response = Res;
    type Error = E;

    fn submit(&self, req: Req) -> impl Future<Output = Result<TaskId, BoxError>> + Send {
        let submit = TaskQueue::submit(self, req);
        async move { Ok(submit.await?) }
    }

    fn status(
        &self,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<TaskStatus>, BoxError>> + Send {
        std::future::ready(Ok(TaskQueue::status(self, id)))
    }

    fn result(&self, id: TaskId) -> impl Future<Output = Result<Res, TaskError<E>>> + Send {
        TaskQueue::result(self, id)
    }

    fn cancel(&self, id: TaskId) -> impl Future<Output = Result<bool, BoxError>> + Send {
        std::future::ready(Ok(TaskQueue::cancel(self, id)))
    }

    fn shutdown(&self, how: Shutdown) -> impl Future<Output = ShutdownSummary> + Send {
        TaskQueue::shutdown(self, how)
    }
}
