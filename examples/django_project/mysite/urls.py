from django.contrib.auth.views import LoginView
from django.urls import path

from mysite import views

urlpatterns = [
    path("", views.index),
    path("login/", LoginView.as_view(template_name="login.html")),
    path("echo/", views.echo),
]
