"""Routes of the Stream-compatible API: no trailing slashes, never a redirect (§1.8)."""

from django.urls import path, re_path

from . import views

CALL = "api/v2/video/call/<str:type>/<str:id>"

urlpatterns = [
    path("api/v2/video/call/members", views.QueryCallMembersView.as_view()),
    path(CALL, views.CallView.as_view()),
    path(f"{CALL}/members", views.CallMembersView.as_view()),
    path(f"{CALL}/join", views.JoinCallView.as_view()),
    path(f"{CALL}/ring", views.RingCallView.as_view()),
    path(f"{CALL}/accept", views.AcceptCallView.as_view()),
    path(f"{CALL}/reject", views.RejectCallView.as_view()),
    path(f"{CALL}/event", views.SendCallEventView.as_view()),
    path(f"{CALL}/go_live", views.GoLiveView.as_view()),
    path(f"{CALL}/stop_live", views.StopLiveView.as_view()),
    path(f"{CALL}/mark_ended", views.EndCallView.as_view()),
    path(f"{CALL}/delete", views.DeleteCallView.as_view()),
    path(f"{CALL}/block", views.BlockUserView.as_view()),
    path(f"{CALL}/unblock", views.UnblockUserView.as_view()),
    path(f"{CALL}/kick", views.KickUserView.as_view()),
    path(f"{CALL}/mute_users", views.MuteUsersView.as_view()),
    path(f"{CALL}/user_permissions", views.UpdateUserPermissionsView.as_view()),
    path(f"{CALL}/<path:rest>", views.UnsupportedView.as_view()),
    path("api/v2/video/calls", views.QueryCallsView.as_view()),
    path("api/v2/video/calltypes", views.CallTypesView.as_view()),
    path("api/v2/video/calltypes/<str:name>", views.CallTypeView.as_view()),
    path("api/v2/users", views.UsersView.as_view()),
    path("api/v2/tasks/<str:id>", views.TaskView.as_view()),
    path("api/v2/app", views.AppView.as_view()),
    re_path(r"^api/.*$", views.NotFoundView.as_view()),
]
